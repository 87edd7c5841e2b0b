//! Progress bars on stderr (indicatif), in one style for every command.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `total` steps drawn on stderr with `template` (indicatif's template syntax), in
/// the commands' common style.
pub fn bar(total: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// [`bar`] when stderr is a terminal; `None` otherwise (logs and pipes get no bar).
pub fn terminal_bar(total: u64, template: &str) -> Option<ProgressBar> {
    std::io::stderr()
        .is_terminal()
        .then(|| bar(total, template))
}
