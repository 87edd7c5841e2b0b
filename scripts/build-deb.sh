#!/usr/bin/env bash
# Builds the Debian package of llama-cli: target/debian/llama-rs_<version>-1_<arch>.deb
# (/usr/bin/llama-cli, one man page per command, bash/zsh/fish completions, the systemd unit
# llama-rs.service and its configuration /etc/llama-rs/serve.toml).
#
#   usage: scripts/build-deb.sh            (needs: cargo install cargo-deb --locked)
#
# The binary is built for this machine's CPU (.cargo/config.toml: target-cpu=native). For a
# package that runs on other machines, set a baseline, e.g.
#   RUSTFLAGS="-C target-cpu=x86-64-v3" scripts/build-deb.sh
# Honours CARGO_TARGET_DIR. Prints the package's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || { echo "cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p llama-cli >&2
bin=$target/release/llama-cli
gen=llama-cli/debian/generated
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/completions"
"$bin" man --dir "$gen/man"
gzip -9n "$gen"/man/*.1
"$bin" completions bash > "$gen/completions/llama-cli"
"$bin" completions zsh > "$gen/completions/_llama-cli"
"$bin" completions fish > "$gen/completions/llama-cli.fish"
cargo deb -p llama-cli --no-build --locked >&2
ls -t "$target"/debian/llama-rs_*.deb | head -1
