"""The model store's cache interoperates with the official huggingface_hub client (PyPI).

  read CACHE REPO FILE PATH   huggingface_hub finds llama-cli's download of REPO/FILE at PATH
  download REPO FILE          huggingface_hub downloads REPO/FILE from HF_ENDPOINT into
                              HF_HUB_CACHE (for llama-cli to find) and prints its path

Prints 'N passed, N failed' for `read`.
"""
import os
import sys

from huggingface_hub import hf_hub_download, scan_cache_dir, try_to_load_from_cache


def read(cache, repo, filename, path):
    checks = []

    def check(name, ok, detail=""):
        checks.append(ok)
        print(("ok " if ok else "FAILED ") + name + (": " + str(detail) if not ok else ""))

    found = try_to_load_from_cache(repo, filename, cache_dir=cache)
    check("try_to_load_from_cache", found == path, found)
    local = hf_hub_download(repo, filename, cache_dir=cache, local_files_only=True)
    check("hf_hub_download(local_files_only=True)", local == path, local)
    info = scan_cache_dir(cache)
    check("scan_cache_dir has no warnings", not info.warnings, info.warnings)
    repos = {r.repo_id: r for r in info.repos}
    check("scan_cache_dir lists the repo", repo in repos, list(repos))
    if repo in repos:
        r = repos[repo]
        files = {f.file_name: f for rev in r.revisions for f in rev.files}
        check("the file is in a revision", filename in files, list(files))
        if filename in files:
            f = files[filename]
            check("its size", f.size_on_disk == os.path.getsize(path), f.size_on_disk)
            check("its blob", os.path.samefile(f.blob_path, path), f.blob_path)
        check("refs/main", "main" in {ref for rev in r.revisions for ref in rev.refs}, r.refs)
    passed = sum(checks)
    print(f"{passed} passed, {len(checks) - passed} failed")
    return 0 if all(checks) else 1


def download(repo, filename):
    print(hf_hub_download(repo, filename))
    return 0


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    sys.exit(read(*args) if command == "read" else download(*args))
