//! One file's download: streamed into `{blob}.incomplete` next to its blob, resumed with
//! `Range` after a dropped connection (retries with exponential backoff) or from what an
//! interrupted run left, checked against the published size and digest, then renamed to its
//! final name in one atomic step. A digest mismatch deletes the partial file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::digest::{ExpectedDigest, Hasher};
use super::error::StoreError;
use super::hub::HubClient;
use super::progress::Progress;

/// Attempts in a row that receive no byte before the download gives up.
pub const MAX_ATTEMPTS_WITHOUT_PROGRESS: u32 = 5;

/// The first retry's delay; each further one doubles it, up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);

/// The longest delay between retries.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(8);

/// What one download is: where from, where to, what the result must be.
#[derive(Debug, Clone)]
pub struct DownloadJob<'a> {
    /// The file's name in messages (its path in the repository, or the URL's file name).
    pub label: &'a str,
    /// The URL of the bytes.
    pub url: &'a str,
    /// The published size.
    pub size: u64,
    /// The published digest.
    pub digest: &'a ExpectedDigest,
    /// The partial file.
    pub partial: &'a Path,
    /// The final path.
    pub destination: &'a Path,
}

/// What a finished download fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes received over the network in this run.
    pub fetched: u64,
    /// Bytes that were already in the partial file.
    pub resumed_from: u64,
    /// The sha256 (or git blob id) of the file.
    pub digest: String,
}

struct Partial {
    file: File,
    path: PathBuf,
    len: u64,
    hasher: Hasher,
}

impl Partial {
    /// Opens the partial file and hashes what it already holds (a longer file is restarted).
    fn open(job: &DownloadJob<'_>) -> Result<Partial, StoreError> {
        let path = job.partial.to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(StoreError::io("cannot create", dir))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(StoreError::io("cannot open", &path))?;
        let mut len = file
            .metadata()
            .map_err(StoreError::io("cannot read", &path))?
            .len();
        let mut hasher = Hasher::new(job.digest, job.size);
        if len > job.size {
            file.set_len(0)
                .map_err(StoreError::io("cannot truncate", &path))?;
            len = 0;
        }
        let mut buf = vec![0u8; 1 << 20];
        let mut hashed = 0;
        file.seek(SeekFrom::Start(0))
            .map_err(StoreError::io("cannot read", &path))?;
        while hashed < len {
            let n = file
                .read(&mut buf)
                .map_err(StoreError::io("cannot read", &path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            hashed += n as u64;
        }
        Ok(Partial {
            file,
            path,
            len: hashed,
            hasher,
        })
    }

    fn restart(&mut self, job: &DownloadJob<'_>) -> Result<(), StoreError> {
        self.file
            .set_len(0)
            .and_then(|_| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(StoreError::io("cannot truncate", &self.path))?;
        self.len = 0;
        self.hasher = Hasher::new(job.digest, job.size);
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(bytes)
            .map_err(StoreError::io("cannot write", &self.path))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// How one attempt ended.
enum Attempt {
    /// The server sent everything it had to.
    Complete,
    /// The connection failed (or ended early); retry.
    Dropped(String),
}

/// Downloads `job`, resuming its partial file, and moves the verified file to its final path.
pub fn download(
    client: &HubClient,
    job: &DownloadJob<'_>,
    progress: &mut dyn Progress,
) -> Result<Downloaded, StoreError> {
    let mut partial = Partial::open(job)?;
    let resumed_from = partial.len;
    progress.start(job.label, job.size, resumed_from);
    partial
        .file
        .seek(SeekFrom::End(0))
        .map_err(StoreError::io("cannot write", &partial.path))?;
    let mut attempts_without_progress = 0;
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempts = 0;
    while partial.len < job.size {
        attempts += 1;
        let before = partial.len;
        match fetch_rest(client, job, &mut partial, progress)? {
            Attempt::Complete if partial.len >= job.size => break,
            Attempt::Complete => {
                // The body ended early without an error: treat it as a dropped connection.
                retry_or_fail(
                    job,
                    &partial,
                    before,
                    &mut attempts_without_progress,
                    &mut delay,
                    attempts,
                    "the body ended early".to_string(),
                    progress,
                )?;
            }
            Attempt::Dropped(error) => retry_or_fail(
                job,
                &partial,
                before,
                &mut attempts_without_progress,
                &mut delay,
                attempts,
                error,
                progress,
            )?,
        }
    }
    let fetched = partial.len - resumed_from;
    finish(job, partial, progress).map(|digest| Downloaded {
        fetched,
        resumed_from,
        digest,
    })
}

#[allow(clippy::too_many_arguments)]
fn retry_or_fail(
    job: &DownloadJob<'_>,
    partial: &Partial,
    before: u64,
    attempts_without_progress: &mut u32,
    delay: &mut Duration,
    attempts: u32,
    error: String,
    progress: &mut dyn Progress,
) -> Result<(), StoreError> {
    if partial.len > before {
        *attempts_without_progress = 0;
        *delay = FIRST_RETRY_DELAY;
    }
    *attempts_without_progress += 1;
    if *attempts_without_progress >= MAX_ATTEMPTS_WITHOUT_PROGRESS {
        return Err(StoreError::DownloadFailed {
            file: job.label.to_string(),
            attempts,
            last_error: error,
            kept: partial.len,
            partial: partial.path.clone(),
        });
    }
    tracing::warn!(file = job.label, %error, "download interrupted; resuming");
    progress.retry(job.label, attempts, *delay, &error);
    std::thread::sleep(*delay);
    *delay = (*delay * 2).min(MAX_RETRY_DELAY);
    Ok(())
}

/// One GET of the bytes not yet in the partial file.
fn fetch_rest(
    client: &HubClient,
    job: &DownloadJob<'_>,
    partial: &mut Partial,
    progress: &mut dyn Progress,
) -> Result<Attempt, StoreError> {
    let start = partial.len;
    let range = (start > 0).then_some((start, None));
    let answer = match client.get(job.url, range) {
        Ok(answer) => answer,
        Err(StoreError::Network { message, .. }) => return Ok(Attempt::Dropped(message)),
        Err(other) => return Err(other),
    };
    match answer.status() {
        206 => {
            let starts_at = answer
                .header("content-range")
                .and_then(|r| r.trim().strip_prefix("bytes "))
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.trim().parse::<u64>().ok());
            if starts_at != Some(start) {
                partial.restart(job)?;
                return Ok(Attempt::Dropped(format!(
                    "the server resumed at {starts_at:?}, not {start}; starting over"
                )));
            }
        }
        200 if start > 0 => {
            // The server ignored the range: take the whole file from the start.
            partial.restart(job)?;
        }
        200 => {}
        416 if start >= job.size => return Ok(Attempt::Complete),
        416 => {
            partial.restart(job)?;
            return Ok(Attempt::Dropped(
                "range not satisfiable; starting over".into(),
            ));
        }
        status if status >= 500 || status == 429 => {
            return Ok(Attempt::Dropped(format!("HTTP {status}")));
        }
        status => {
            return Err(StoreError::Http {
                url: super::http::display_url(&answer.url),
                status,
                detail: answer.header("x-error-message").map(str::to_string),
            })
        }
    }
    let mut body = answer.response.into_body().into_reader();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match body.read(&mut buf) {
            Ok(0) => return Ok(Attempt::Complete),
            Ok(n) => {
                let room = job.size.saturating_sub(partial.len);
                if n as u64 > room {
                    let sent = partial.len + n as u64;
                    let _ = std::fs::remove_file(&partial.path);
                    return Err(StoreError::SizeMismatch {
                        file: job.label.to_string(),
                        expected: job.size,
                        actual: sent,
                    });
                }
                partial.append(&buf[..n])?;
                progress.advance(n as u64);
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Ok(Attempt::Dropped(err.to_string())),
        }
    }
}

/// Checks size and digest, syncs, and renames the partial file to its final path.
fn finish(
    job: &DownloadJob<'_>,
    partial: Partial,
    progress: &mut dyn Progress,
) -> Result<String, StoreError> {
    let Partial {
        file,
        path,
        len,
        hasher,
    } = partial;
    if len != job.size {
        let _ = std::fs::remove_file(&path);
        return Err(StoreError::SizeMismatch {
            file: job.label.to_string(),
            expected: job.size,
            actual: len,
        });
    }
    let actual = hasher.finish();
    if let Some(expected) = job.digest.expected() {
        if !expected.eq_ignore_ascii_case(&actual) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(StoreError::DigestMismatch {
                file: job.label.to_string(),
                algorithm: job.digest.algorithm(),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    file.sync_all()
        .map_err(StoreError::io("cannot sync", &path))?;
    drop(file);
    std::fs::rename(&path, job.destination).map_err(StoreError::io(
        "cannot move the download into place at",
        job.destination,
    ))?;
    progress.finish(
        job.label,
        job.digest.expected().map(|_| job.digest.algorithm()),
    );
    Ok(actual)
}
