//! The data directory holds customer data (phone numbers, emails) and the
//! master key: only the service's own user may read it.

use std::path::{Path, PathBuf};

/// Creates `dir` (and its parents) with mode 0700 where they do not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Tightens `dir` and everything under it to 0700 (directories) and 0600
/// (files), returning the paths it changed; a missing `dir` is not an error.
/// Symbolic links are left alone: they may point outside the directory.
#[cfg(unix)]
pub fn make_private(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut fixed = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let want = if meta.is_dir() {
            0o700
        } else if meta.is_file() {
            0o600
        } else {
            continue;
        };
        if meta.permissions().mode() & 0o777 != want {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want))?;
            fixed.push(path.clone());
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(fixed)
}

#[cfg(not(unix))]
pub fn make_private(_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(Vec::new())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn loose_files_and_dirs_are_tightened_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        create_private_dir(&data.join("tenants")).unwrap();
        assert_eq!(mode(&data), 0o700);
        let db = data.join("tenants/t.db");
        std::fs::write(&db, b"x").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tight = data.join("control.db");
        std::fs::write(&tight, b"x").unwrap();
        std::fs::set_permissions(&tight, std::fs::Permissions::from_mode(0o600)).unwrap();

        let mut fixed = make_private(&data).unwrap();
        fixed.sort();
        assert_eq!(fixed, vec![data.clone(), db.clone()]);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert!(
            make_private(&data).unwrap().is_empty(),
            "nothing left to fix"
        );
        assert!(
            make_private(&tmp.path().join("missing"))
                .unwrap()
                .is_empty()
        );
    }
}
