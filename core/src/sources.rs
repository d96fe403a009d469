//! Which files of a GitOps directory are a fabric's sources.
//!
//! - Hidden entries (a name starting with '.': `.hnp/`, `.github/`, `.gitlab-ci.yml`) are never
//!   read: they hold tool metadata, not fabric objects.
//! - A directory holding `.hnp/manifest.yaml` is laid out by the Hedgehog NetBox Plugin: its
//!   `managed/` and `raw/` directories are the fabric; `unmanaged/` and the rest are not read.
//! - A fabric's include globs (any must match, when given) and exclude globs (none may match)
//!   narrow what is left. Globs are matched against paths relative to the GitOps directory;
//!   `*` stays within one path segment, `**` crosses them.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::vocab::Layout;

/// The file whose presence, relative to the GitOps directory, marks an HNP layout.
pub const HNP_MARKER: &str = ".hnp/manifest.yaml";
/// The top-level directories of an HNP layout that hold the fabric.
const HNP_READ: &[&str] = &["managed", "raw"];
/// At most this many globs per list, each at most this long.
pub const MAX_GLOBS: usize = 100;
pub const MAX_GLOB_LEN: usize = 1024;

/// A glob that is not one; `list` is "include_paths" or "exclude_paths".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError {
    pub list: &'static str,
    pub index: Option<usize>,
    pub message: String,
}

/// What a pull reads of a GitOps directory.
#[derive(Debug, Clone)]
pub struct Selection {
    layout: Layout,
    include: Option<GlobSet>,
    exclude: GlobSet,
}

fn glob(pattern: &str) -> Result<Glob, String> {
    if pattern.is_empty() {
        return Err("must not be empty".into());
    }
    if pattern.len() > MAX_GLOB_LEN {
        return Err(format!("must be at most {MAX_GLOB_LEN} bytes"));
    }
    if pattern.starts_with('/') {
        return Err("must be relative to the GitOps directory (no leading '/')".into());
    }
    GlobBuilder::new(pattern).literal_separator(true).build().map_err(|e| e.kind().to_string())
}

fn glob_set(list: &'static str, patterns: &[String]) -> Result<GlobSet, GlobError> {
    if patterns.len() > MAX_GLOBS {
        return Err(GlobError { list, index: None, message: format!("at most {MAX_GLOBS} globs") });
    }
    let mut set = GlobSetBuilder::new();
    for (i, pattern) in patterns.iter().enumerate() {
        set.add(glob(pattern).map_err(|message| GlobError { list, index: Some(i), message })?);
    }
    set.build().map_err(|e| GlobError { list, index: None, message: e.to_string() })
}

/// Checks a fabric's globs (as CreateFabric and UpdateFabric do).
pub fn check_globs(include: &[String], exclude: &[String]) -> Result<(), GlobError> {
    glob_set("include_paths", include)?;
    glob_set("exclude_paths", exclude)?;
    Ok(())
}

fn is_hidden(path: &str) -> bool {
    path.split('/').any(|segment| segment.starts_with('.'))
}

fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

impl Default for Selection {
    /// Every YAML file that is not hidden.
    fn default() -> Selection {
        Selection { layout: Layout::Plain, include: None, exclude: GlobSet::empty() }
    }
}

impl Selection {
    /// A plain layout's selection; `with_layout` once the directory's layout is known.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Selection, GlobError> {
        let include = if include.is_empty() { None } else { Some(glob_set("include_paths", include)?) };
        Ok(Selection { layout: Layout::Plain, include, exclude: glob_set("exclude_paths", exclude)? })
    }

    pub fn with_layout(mut self, layout: Layout) -> Selection {
        self.layout = layout;
        self
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Whether the directory at `path` (relative to the GitOps directory) may hold sources.
    pub fn enters(&self, path: &str) -> bool {
        !is_hidden(path)
            && (self.layout == Layout::Plain || path.split('/').next().is_some_and(|top| HNP_READ.contains(&top)))
    }

    /// Whether the file at `path` (relative to the GitOps directory) is a source.
    pub fn reads(&self, path: &str) -> bool {
        let directory = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let entered = if directory.is_empty() { self.layout == Layout::Plain } else { self.enters(directory) };
        entered
            && is_yaml(path)
            && !is_hidden(path)
            && self.include.as_ref().is_none_or(|set| set.is_match(path))
            && !self.exclude.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn read(selection: &Selection, paths: &[&str]) -> Vec<String> {
        paths.iter().filter(|p| selection.reads(p)).map(|p| p.to_string()).collect()
    }

    const PATHS: &[&str] = &[
        "switches.yaml",
        ".gitlab-ci.yml",
        ".hnp/manifest.yaml",
        ".github/workflows/ci.yaml",
        "managed/switches/leaf-1.yaml",
        "managed/.archive/old.yaml",
        "raw/wiring.yml",
        "unmanaged/notes.yaml",
        "drafts/vpc.yaml",
        "README.md",
    ];

    #[test]
    fn hidden_entries_are_never_read() {
        let plain = Selection::new(&[], &[]).unwrap();
        assert_eq!(
            read(&plain, PATHS),
            strings(&[
                "switches.yaml",
                "managed/switches/leaf-1.yaml",
                "raw/wiring.yml",
                "unmanaged/notes.yaml",
                "drafts/vpc.yaml"
            ])
        );
        assert!(!plain.enters(".hnp") && !plain.enters("a/.git") && plain.enters("a/b"));
    }

    #[test]
    fn an_hnp_layout_reads_managed_and_raw_only() {
        let hnp = Selection::new(&[], &[]).unwrap().with_layout(Layout::Hnp);
        assert_eq!(read(&hnp, PATHS), strings(&["managed/switches/leaf-1.yaml", "raw/wiring.yml"]));
        assert!(hnp.enters("managed/switches") && !hnp.enters("unmanaged") && !hnp.enters("managed/.archive"));
    }

    #[test]
    fn globs_narrow_what_is_left() {
        let only_managed = Selection::new(&strings(&["managed/**"]), &[]).unwrap();
        assert_eq!(read(&only_managed, PATHS), strings(&["managed/switches/leaf-1.yaml"]));
        let no_drafts = Selection::new(&[], &strings(&["drafts/**", "*.yml"])).unwrap();
        // `*` stays within a segment: "*.yml" excludes a top-level file only.
        assert_eq!(
            read(&no_drafts, PATHS),
            strings(&["switches.yaml", "managed/switches/leaf-1.yaml", "raw/wiring.yml", "unmanaged/notes.yaml"])
        );
    }

    #[test]
    fn bad_globs_are_named() {
        let err = check_globs(&strings(&["ok/**"]), &strings(&["a/**", "[z-a]"])).unwrap_err();
        assert_eq!((err.list, err.index), ("exclude_paths", Some(1)));
        assert!(!err.message.is_empty());
        assert_eq!(check_globs(&strings(&["/abs"]), &[]).unwrap_err().index, Some(0));
        assert_eq!(check_globs(&strings(&[""]), &[]).unwrap_err().message, "must not be empty");
        assert!(check_globs(&vec!["a".to_string(); MAX_GLOBS + 1], &[]).is_err());
    }
}
