//! Campaigns: the seeds of one run configuration split into shards that run as separate
//! processes, on one machine or many (a Slurm job array, a Kubernetes Indexed Job, GNU
//! `parallel`), each writing one JSON line per seed ([`Line`]); [`merge`] puts the shards
//! back together into one [`Summary`], the same as one unsharded run's.

use crate::config::RunConfig;
use crate::run::RunSummary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The format of a campaign line; a merge refuses lines of another.
pub const FORMAT: u32 = 1;

/// The commit the program was built from (`unknown` outside a git checkout).
pub const COMMIT: &str = env!("REHEARSAL_COMMIT");

/// Shard `index` of `count` (0-based): the seeds at offsets `index`, `index + count`, ...
/// from the first seed, so that every shard gets a share of early and late seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole campaign as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// `I/N` (0 <= I < N), or `auto`: the shard a job array gives this process, from
    /// Slurm's `SLURM_ARRAY_TASK_ID` and `SLURM_ARRAY_TASK_COUNT` (less
    /// `SLURM_ARRAY_TASK_MIN`), or Kubernetes' `JOB_COMPLETION_INDEX` with the count in
    /// `REHEARSAL_SHARDS` (an Indexed Job does not pass its completions on).
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
        if text == "auto" {
            return Self::from_env(env);
        }
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("--shard `{text}`: expected I/N (e.g. 0/4) or auto"))?;
        let number = |what: &str, s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("--shard `{text}`: the {what} `{s}` is not a number"))
        };
        Self::checked(
            number("shard", i)?,
            number("shard count", n)?,
            &format!("--shard `{text}`"),
        )
    }

    fn checked(index: u64, count: u64, origin: &str) -> Result<Shard, String> {
        if count == 0 {
            return Err(format!("{origin}: the shard count must be at least 1"));
        }
        if index >= count {
            return Err(format!(
                "{origin}: shard {index} of {count} does not exist (shards are numbered 0 to {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
        let number = |name: &str| -> Result<Option<u64>, String> {
            match env(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| format!("--shard auto: {name}=`{v}` is not a number")),
            }
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let count = number("SLURM_ARRAY_TASK_COUNT")?.ok_or(
                "--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not",
            )?;
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index = id.checked_sub(min).ok_or_else(|| {
                format!(
                    "--shard auto: SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                )
            })?;
            return Self::checked(index, count, "--shard auto (Slurm)");
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = number("REHEARSAL_SHARDS")?.ok_or(
                "--shard auto: JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but \
                 REHEARSAL_SHARDS, the number of completions, is not: set it in the job's env",
            )?;
            return Self::checked(index, count, "--shard auto (Kubernetes)");
        }
        Err(
            "--shard auto: neither SLURM_ARRAY_TASK_ID (Slurm job array) nor \
             JOB_COMPLETION_INDEX (Kubernetes Indexed Job) is set; give the shard as I/N"
                .into(),
        )
    }

    /// How many of `seeds` seeds fall in this shard.
    pub fn len(&self, seeds: u64) -> u64 {
        seeds.saturating_sub(self.index).div_ceil(self.count)
    }

    /// Whether the shard has no seed of `seeds`.
    pub fn is_empty(&self, seeds: u64) -> bool {
        self.len(seeds) == 0
    }

    /// The offset from the first seed of this shard's `i`-th seed.
    pub fn offset(&self, i: u64) -> u64 {
        self.index + i * self.count
    }
}

/// What identifies a campaign's configuration: the run configuration less its seed, as a
/// BLAKE3 hash (16 hex digits) of its JSON form.
pub fn config_hash(config: &RunConfig) -> String {
    let mut value = serde_json::to_value(config).expect("a run configuration serializes");
    if let Some(fields) = value.as_object_mut() {
        fields.remove("seed");
    }
    let hash = blake3::hash(value.to_string().as_bytes());
    hash.to_hex()[..16].to_string()
}

/// One seed's run in a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub campaign: u32,
    pub commit: String,
    pub protocol: String,
    pub config_hash: String,
    /// The campaign's seeds: `first_seed` and the `seeds - 1` after it.
    pub first_seed: u64,
    pub seeds: u64,
    pub shard: Shard,
    pub seed: u64,
    /// `ok`, `violation` or `stalled`.
    pub outcome: String,
    pub violations: Vec<String>,
    pub digest: String,
    pub sim_time_ns: u64,
    pub wall_time_ns: u64,
    /// The command that re-runs this seed alone (with `--trace FILE` to record it).
    pub command: String,
}

impl Line {
    /// The line of `summary`, a run of the campaign of `seeds` seeds of `base` whose
    /// [`config_hash`] is `hash` (hashed once per campaign, not per line).
    pub fn of(
        summary: &RunSummary,
        base: &RunConfig,
        hash: &str,
        seeds: u64,
        shard: Shard,
    ) -> Line {
        Line {
            campaign: FORMAT,
            commit: COMMIT.into(),
            protocol: summary.config.protocol.name().into(),
            config_hash: hash.into(),
            first_seed: base.seed,
            seeds,
            shard,
            seed: summary.config.seed,
            outcome: format!("{:?}", summary.outcome).to_lowercase(),
            violations: summary.violations.iter().map(ToString::to_string).collect(),
            digest: summary.digest.to_string(),
            sim_time_ns: summary.sim_time.as_nanos(),
            wall_time_ns: u64::try_from(summary.wall_time.as_nanos()).unwrap_or(u64::MAX),
            command: summary.config.command_line(),
        }
    }
}

/// A failing seed of a merged campaign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub seed: u64,
    pub outcome: String,
    pub violations: Vec<String>,
    pub command: String,
}

/// Shards merged: what one unsharded run of the campaign reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub commit: String,
    pub protocol: String,
    pub config_hash: String,
    pub first_seed: u64,
    pub seeds: u64,
    /// Seeds with a line.
    pub runs: u64,
    pub ok: u64,
    pub violation: u64,
    pub stalled: u64,
    /// Seeds of the campaign no line reports (a shard that did not run or did not end).
    pub missing: Vec<u64>,
    /// Every failing seed, in seed order.
    pub failing: Vec<Failure>,
    /// The runs' wall time, summed over every shard.
    pub run_time_ns: u64,
}

/// Merges the lines of `files` (each a name and its text): every line must belong to one
/// campaign (format, commit, configuration and seeds), and a seed reported twice must
/// have run identically. Errors name the file and line.
pub fn merge(files: &[(String, String)]) -> Result<Summary, String> {
    let mut first: Option<(Line, String)> = None;
    let mut by_seed: BTreeMap<u64, (Line, String)> = BTreeMap::new();
    for (name, text) in files {
        for (n, raw) in text.lines().enumerate() {
            let place = format!("{name}:{}", n + 1);
            if raw.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(raw).map_err(|e| {
                format!("{place}: not a campaign line (`rehearsal sim --shard`): {e}")
            })?;
            if line.campaign != FORMAT {
                return Err(format!(
                    "{place}: campaign line format {}, this program reads format {FORMAT}",
                    line.campaign
                ));
            }
            let in_campaign = line
                .seed
                .checked_sub(line.first_seed)
                .is_some_and(|offset| offset < line.seeds);
            if !in_campaign {
                return Err(format!(
                    "{place}: seed {} is not among the campaign's {} seeds from {}",
                    line.seed, line.seeds, line.first_seed
                ));
            }
            match &first {
                None => first = Some((line.clone(), place.clone())),
                Some((f, at)) => {
                    let differs = [
                        ("commit", &f.commit, &line.commit),
                        ("protocol", &f.protocol, &line.protocol),
                        ("configuration", &f.config_hash, &line.config_hash),
                    ]
                    .into_iter()
                    .find(|(_, a, b)| a != b);
                    if let Some((what, a, b)) = differs {
                        return Err(format!(
                            "{place}: another campaign: its {what} is {b}, but {at} has {a}"
                        ));
                    }
                    if (f.first_seed, f.seeds) != (line.first_seed, line.seeds) {
                        return Err(format!(
                            "{place}: another campaign: seeds {}..{} (from {}), but {at} has {}..{}",
                            line.first_seed,
                            line.first_seed as u128 + line.seeds as u128,
                            line.seed,
                            f.first_seed,
                            f.first_seed as u128 + f.seeds as u128
                        ));
                    }
                }
            }
            if let Some((earlier, at)) = by_seed.get(&line.seed) {
                if (&earlier.digest, &earlier.outcome) != (&line.digest, &line.outcome) {
                    return Err(format!(
                        "{place}: seed {} ran differently than at {at} (digest {} vs {}): \
                         the two runs were not the same program or configuration",
                        line.seed, line.digest, earlier.digest
                    ));
                }
                continue;
            }
            by_seed.insert(line.seed, (line, place));
        }
    }
    let Some((first, _)) = first else {
        return Err("no campaign lines to merge: the files are empty".into());
    };
    let mut summary = Summary {
        commit: first.commit.clone(),
        protocol: first.protocol.clone(),
        config_hash: first.config_hash.clone(),
        first_seed: first.first_seed,
        seeds: first.seeds,
        runs: by_seed.len() as u64,
        ok: 0,
        violation: 0,
        stalled: 0,
        missing: Vec::new(),
        failing: Vec::new(),
        run_time_ns: 0,
    };
    let mut expected = first.first_seed;
    for (seed, (line, place)) in &by_seed {
        summary.missing.extend(expected..*seed);
        expected = seed + 1;
        summary.run_time_ns = summary.run_time_ns.saturating_add(line.wall_time_ns);
        match line.outcome.as_str() {
            "ok" => summary.ok += 1,
            "violation" => summary.violation += 1,
            "stalled" => summary.stalled += 1,
            other => return Err(format!("{place}: unknown outcome `{other}`")),
        }
        if line.outcome != "ok" {
            summary.failing.push(Failure {
                seed: *seed,
                outcome: line.outcome.clone(),
                violations: line.violations.clone(),
                command: line.command.clone(),
            });
        }
    }
    let end = first.first_seed as u128 + first.seeds as u128;
    summary
        .missing
        .extend((expected as u128..end).map(|s| s as u64));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn shards_split_the_seeds_between_them_exactly_once() {
        for seeds in [0, 1, 7, 100] {
            for count in [1, 2, 3, 8] {
                let mut all: Vec<u64> = (0..count)
                    .flat_map(|index| {
                        let shard = Shard { index, count };
                        (0..shard.len(seeds)).map(move |i| shard.offset(i))
                    })
                    .collect();
                all.sort_unstable();
                assert_eq!(
                    all,
                    (0..seeds).collect::<Vec<_>>(),
                    "{seeds} seeds, {count} shards"
                );
            }
        }
    }

    #[test]
    fn a_shard_is_read_from_its_flag_or_from_the_job_array() {
        assert_eq!(Shard::parse("2/4", &none), Ok(Shard { index: 2, count: 4 }));
        for bad in ["4/4", "1/0", "x/2", "3", "auto"] {
            let e = Shard::parse(bad, &none).unwrap_err();
            assert!(e.starts_with("--shard"), "{bad}: {e}");
        }
        let slurm = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("5".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("1".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("8".to_string()),
            _ => None,
        };
        assert_eq!(
            Shard::parse("auto", &slurm),
            Ok(Shard { index: 4, count: 8 })
        );
        let k8s = |k: &str| match k {
            "JOB_COMPLETION_INDEX" => Some("0".to_string()),
            "REHEARSAL_SHARDS" => Some("3".to_string()),
            _ => None,
        };
        assert_eq!(Shard::parse("auto", &k8s), Ok(Shard { index: 0, count: 3 }));
        let k8s_no_count = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "0".to_string());
        let e = Shard::parse("auto", &k8s_no_count).unwrap_err();
        assert!(e.contains("REHEARSAL_SHARDS"), "{e}");
    }
}
