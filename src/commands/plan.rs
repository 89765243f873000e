//! `mkstick plan`: what the stick will do, in words or as JSON.

use super::plan_and_render;
use crate::cli::PlanArgs;
use crate::describe;
use crate::plan::SeedChoice;
use crate::progress::Progress;
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn plan(a: &PlanArgs, progress: &Progress, out: &mut impl Write) -> Result<ExitCode> {
    let (plan, payload, _lock) = plan_and_render(&a.config, SeedChoice::Derived, progress)?;
    if a.json {
        serde_json::to_writer_pretty(&mut *out, &describe::describe_json(&plan, &payload))?;
        writeln!(out)?;
    } else {
        write!(out, "{}", describe::describe(&plan, &payload))?;
    }
    Ok(ExitCode::SUCCESS)
}
