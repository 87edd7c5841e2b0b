//! The `doctor --bundle FILE` archive: a gzip-compressed tar of named text files under one
//! directory, written under a temporary name next to `FILE` and renamed into place when
//! complete. The caller redacts what goes in.

use std::io::Write;
use std::path::Path;

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name inside the bundle's directory, e.g. `report.txt`.
    pub name: String,
    /// Its contents.
    pub contents: Vec<u8>,
}

/// Writes `entries` into a `.tar.gz` at `path`, each under `dir/` (replacing an older file
/// only once the new one is complete).
pub fn write(path: &Path, dir: &str, entries: &[Entry]) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".bundle.")
        .suffix(".partial")
        .tempfile_in(&parent)?;
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let gz = flate2::write::GzEncoder::new(temp, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(entry.contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(
            &mut header,
            format!("{dir}/{}", entry.name),
            entry.contents.as_slice(),
        )?;
    }
    let gz = tar.into_inner()?;
    let mut temp = gz.finish()?;
    temp.flush()?;
    temp.as_file().sync_all()?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o600))?;
    }
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_bundle_reads_back_with_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.gz");
        let entries = vec![
            Entry {
                name: "report.txt".into(),
                contents: b"hello".to_vec(),
            },
            Entry {
                name: "logs/llama-cpp.log".into(),
                contents: b"line\n".to_vec(),
            },
        ];
        write(&path, "llama-rs-doctor", &entries).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let mut text = String::new();
            e.read_to_string(&mut text).unwrap();
            seen.push((e.path().unwrap().display().to_string(), text));
        }
        assert_eq!(
            seen,
            vec![
                ("llama-rs-doctor/report.txt".into(), "hello".into()),
                ("llama-rs-doctor/logs/llama-cpp.log".into(), "line\n".into())
            ]
        );
    }
}
