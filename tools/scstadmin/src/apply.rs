// SPDX-License-Identifier: GPL-2.0

//! Carrying out a plan: each write in turn; at the first refusal, the
//! system is put back as it was before the first write.

use crate::plan::{plan, Step};
use crate::sysfs::{Sysfs, System, WriteError};

/// How an application ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every write was made.
    Applied(usize),
    /// A write was refused after `applied` others; `restored` says
    /// whether putting them back worked (and what failed if not).
    Failed {
        applied: Vec<Step>,
        error: WriteError,
        restored: Result<(), String>,
    },
}

/// Makes every write of `steps`; `before` is the system they start from.
pub fn apply(fs: &Sysfs, before: &System, steps: &[Step], log: &mut dyn FnMut(&Step)) -> Outcome {
    for (i, s) in steps.iter().enumerate() {
        log(s);
        if let Err(error) = fs.write(&s.path, &s.text) {
            let applied = steps[..i].to_vec();
            let restored = restore(fs, before, &applied);
            return Outcome::Failed {
                applied,
                error,
                restored,
            };
        }
    }
    Outcome::Applied(steps.len())
}

/// Puts the system back as `before` shows it: its objects and key
/// attributes by applying its configuration with force, then the previous
/// values of the attribute files `applied` wrote.
pub fn restore(fs: &Sysfs, before: &System, applied: &[Step]) -> Result<(), String> {
    let now = fs.system().map_err(|e| e.to_string())?;
    let back = plan(&now, &before.config, true).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    for s in &back {
        fs.write(&s.path, &s.text).map_err(|e| e.to_string())?;
    }
    let now = fs.system().map_err(|e| e.to_string())?;
    for s in applied.iter().rev().filter(|s| !s.path.ends_with("mgmt")) {
        let (Some(old), Some(cur)) = (before.values.get(&s.path), now.values.get(&s.path)) else {
            continue;
        };
        if old != cur && now.writable.contains(&s.path) {
            fs.write(&s.path, old).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
