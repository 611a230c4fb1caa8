//! Aligning a recording's stimulus axis with its stimulus set by id: any
//! subset in any order, but every id must exist in the set and appear once.

use std::collections::HashMap;

use crate::error::{list_some, IngestError, Result};

/// Rejects duplicate ids, listing them.
pub fn check_unique(field: &str, ids: &[String]) -> Result<()> {
    let mut seen = HashMap::with_capacity(ids.len());
    let mut dups = Vec::new();
    for id in ids {
        let n = seen.entry(id.as_str()).or_insert(0u32);
        *n += 1;
        if *n == 2 {
            dups.push(format!("{id:?}"));
        }
    }
    if !dups.is_empty() {
        return Err(IngestError::invalid(format!(
            "{field}: {} duplicate id(s): {}",
            dups.len(),
            list_some(&dups, 20)
        )));
    }
    if ids.iter().any(|i| i.is_empty()) {
        return Err(IngestError::invalid(format!(
            "{field}: ids must not be empty strings"
        )));
    }
    Ok(())
}

/// The index in the set of each of the recording's stimuli.
pub fn align(set_ids: &[String], rec_ids: &[String]) -> Result<Vec<u32>> {
    check_unique("stimulus_ids", rec_ids)?;
    let pos: HashMap<&str, u32> = set_ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    let mut missing = Vec::new();
    let idx: Vec<u32> = rec_ids
        .iter()
        .filter_map(|id| {
            let p = pos.get(id.as_str()).copied();
            if p.is_none() {
                missing.push(format!("{id:?}"));
            }
            p
        })
        .collect();
    if !missing.is_empty() {
        return Err(IngestError::invalid(format!(
            "stimulus_ids: {} id(s) are not in the stimulus set: {}",
            missing.len(),
            list_some(&missing, 20)
        )));
    }
    Ok(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn subsets_and_reorders() {
        assert_eq!(
            align(&s(&["a", "b", "c"]), &s(&["c", "a"])).unwrap(),
            vec![2, 0]
        );
    }

    #[test]
    fn names_missing_and_duplicate_ids() {
        let e = align(&s(&["a", "b"]), &s(&["a", "zz", "yy"])).unwrap_err();
        assert!(
            e.message.contains("\"zz\"")
                && e.message.contains("\"yy\"")
                && e.message.starts_with("stimulus_ids: 2"),
            "{e}"
        );
        let e = align(&s(&["a", "b"]), &s(&["a", "b", "a"])).unwrap_err();
        assert!(
            e.message.contains("duplicate") && e.message.contains("\"a\""),
            "{e}"
        );
    }
}
