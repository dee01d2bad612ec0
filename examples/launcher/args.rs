//! The launcher's command line.

use std::fmt;
use std::path::PathBuf;

use vmsi::msi::Strategy;

/// What `--help` prints, and what follows every argument error.
pub const USAGE: &str = "\
usage: launcher [--sim] [--sim-proposed-uapi] [--device /dev/vfio/devices/vfioN] [--ram-mib N] [--ram-gpa ADDR]
                [--strategy auto|kernel-window|user-window|per-vector] [--nested|--paging]
                [--vectors K] [--no-kvm]
  --sim         run on Sim, the in-process model of Linux 7.2 (the default without /dev/iommu)
  --sim-proposed-uapi
                run on Sim modelling the rig's reference kernel, which has the proposed
                per-vector MSI uAPI (UserWindow, PerVector; needs the proposed-uapi feature)
  --device      the VFIO cdev of an NVMe controller (on Sim: vfio1 unless named)
  --ram-mib     guest RAM in MiB (default 64, at least 4)
  --ram-gpa     guest physical address of guest RAM (default 0x40000000)
  --strategy    MSI strategy (default auto: the best the kernel offers)
  --nested      the guest owns a stage 1 through a vIOMMU (default)
  --paging      no vIOMMU: the guest's addresses are GPAs in the VM's stage 2
  --vectors     MSI-X vectors the guest programs and the device fires (default 4)
  --no-kvm      stop after the host-side setup even where there is an arm64 /dev/kvm, and
                follow each vector to its eventfd";

/// The strategy asked for on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyRequest {
    /// Whatever probing finds best.
    Auto,
    /// This one, or fail.
    Named(Strategy),
}

/// Everything the command line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Run on Sim even if the host has iommufd.
    pub sim: bool,
    /// Sim models the reference kernel's proposed per-vector uAPI (implies `sim`).
    pub sim_proposed_uapi: bool,
    /// The VFIO cdev; `None` lets the backend choose (Sim) or asks for one (host).
    pub device: Option<PathBuf>,
    /// Guest RAM size in MiB.
    pub ram_mib: u64,
    /// Guest RAM's guest physical address.
    pub ram_gpa: u64,
    /// The MSI strategy asked for.
    pub strategy: StrategyRequest,
    /// Nested (vIOMMU, guest stage 1) rather than paging (stage 2 only).
    pub nested: bool,
    /// Vectors to program and fire.
    pub vectors: u32,
    /// Leave KVM out even where there is one: the eventfds are the end of the line.
    pub no_kvm: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sim: false,
            sim_proposed_uapi: false,
            device: None,
            ram_mib: 64,
            ram_gpa: 0x4000_0000,
            strategy: StrategyRequest::Auto,
            nested: true,
            vectors: 4,
            no_kvm: false,
        }
    }
}

/// The room guest RAM needs: 2 MiB below the stage-1 tables and queues, plus those.
pub const MIN_RAM_MIB: u64 = 4;

/// A command line the launcher cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Launch with these options.
    Run(Options),
    /// Print the usage.
    Help,
}

impl Options {
    /// Parses the arguments after the program name. Flags take their value as the next
    /// argument or after `=`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, ArgError> {
        let mut o = Options::default();
        let (mut nested, mut paging) = (false, false);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| ArgError(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--sim" => o.sim = switch(&flag, &inline)?,
                "--sim-proposed-uapi" => {
                    o.sim_proposed_uapi = switch(&flag, &inline)?;
                    o.sim = true;
                }
                "--nested" => nested = switch(&flag, &inline)?,
                "--paging" => paging = switch(&flag, &inline)?,
                "--no-kvm" => o.no_kvm = switch(&flag, &inline)?,
                "--device" => o.device = Some(PathBuf::from(value()?)),
                "--ram-mib" => o.ram_mib = number(&flag, &value()?)?,
                "--ram-gpa" => o.ram_gpa = number(&flag, &value()?)?,
                "--vectors" => o.vectors = number(&flag, &value()?)?,
                "--strategy" => o.strategy = strategy(&value()?)?,
                _ => return Err(ArgError(format!("unknown argument '{arg}'"))),
            }
        }
        if nested && paging {
            return Err(ArgError("--nested and --paging exclude each other".into()));
        }
        o.nested = !paging;
        o.check()?;
        Ok(Command::Run(o))
    }

    /// Range checks that need no machine; the machine-dependent ones come when it is known.
    fn check(&self) -> Result<(), ArgError> {
        if self.ram_mib < MIN_RAM_MIB || self.ram_mib > 1 << 20 {
            return Err(ArgError(format!(
                "--ram-mib {} is outside {MIN_RAM_MIB}..=1048576",
                self.ram_mib
            )));
        }
        if self.ram_gpa % 0x1000 != 0 {
            return Err(ArgError(format!(
                "--ram-gpa {:#x} is not page aligned",
                self.ram_gpa
            )));
        }
        if self.ram_gpa.checked_add(self.ram_mib << 20).is_none() {
            return Err(ArgError(
                "guest RAM would end past the top of the address space".into(),
            ));
        }
        if !(1..=2048).contains(&self.vectors) {
            return Err(ArgError(format!(
                "--vectors {} is outside 1..=2048 (MSI-X)",
                self.vectors
            )));
        }
        Ok(())
    }
}

/// A flag without a value: `true`, or an error for `--flag=value`.
fn switch(flag: &str, inline: &Option<String>) -> Result<bool, ArgError> {
    match inline {
        None => Ok(true),
        Some(_) => Err(ArgError(format!("{flag} takes no value"))),
    }
}

/// A decimal or `0x` hexadecimal number.
fn number<T: TryFrom<u64>>(flag: &str, text: &str) -> Result<T, ArgError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed
        .ok()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| ArgError(format!("{flag}: '{text}' is not a number in range")))
}

fn strategy(text: &str) -> Result<StrategyRequest, ArgError> {
    Ok(match text {
        "auto" => StrategyRequest::Auto,
        "kernel-window" => StrategyRequest::Named(Strategy::KernelWindow),
        "user-window" => StrategyRequest::Named(Strategy::UserWindow),
        "per-vector" => StrategyRequest::Named(Strategy::PerVector),
        _ => {
            return Err(ArgError(format!(
                "unknown strategy '{text}' (auto, kernel-window, user-window, per-vector)"
            )));
        }
    })
}
