//! `wgpu-lstm`: run a PyTorch `nn.LSTM` checkpoint over tensors in a
//! safetensors file, on the GPU (wgpu) or the CPU engine, and list the
//! GPU adapters wgpu can see.
//!
//! Every error is one line on stderr starting with `error: `, and the exit
//! status is 1 (2 for command-line usage errors, from clap).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod doctor;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wgpu_lstm::gpu::list_adapters;
use wgpu_lstm::tensor_file::Dtype;
use wgpu_lstm::weights::{SafetensorsPrefix, detect_prefix};
use wgpu_lstm::{Cell, Device, Lstm, Precision};
use wgpu_lstm::{LstmError, LstmInput, LstmWeights, Tensor, TensorFile, save_tensors};

/// LSTM inference with exact PyTorch nn.LSTM semantics, on any GPU through
/// wgpu (Vulkan, Metal, DX12) or on the CPU.
#[derive(Parser, Debug)]
#[command(name = "wgpu-lstm", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an nn.LSTM or nn.GRU forward pass: read MODEL and IN, write OUT
    ///
    /// MODEL is a PyTorch nn.LSTM or nn.GRU state_dict saved with safetensors:
    ///
    ///     safetensors.torch.save_file(lstm.state_dict(), "model.safetensors")
    ///
    /// The architecture (LSTM or GRU, input and hidden size, layers,
    /// bidirectional, bias) is inferred from the tensor names and shapes;
    /// F32, F16, BF16 and F64 weights are accepted and converted to the
    /// working precision (f32 unless --precision f16). An LSTM or a GRU runs
    /// on either device.
    ///
    /// IN holds (D = 2 if bidirectional else 1, L = num_layers, H = hidden size):
    ///
    ///     input    F32        [T, B, I], or [B, T, I] with --batch-first   (required)
    ///     h_0      F32        [D·L, B, H]    initial hidden state (zeros if absent)
    ///     c_0      F32        [D·L, B, H]    initial cell state; both or neither
    ///                                        (an LSTM's only: a GRU has none)
    ///     lengths  I64 or I32 [B]            valid steps per sequence, each in 1..=T,
    ///                                        any order (pack_padded_sequence with
    ///                                        enforce_sorted=False); all T if absent
    ///
    /// Any other tensor in IN is an error.
    ///
    /// OUT receives (F32), as from `output, (h_n, c_n) = lstm(input, (h_0, c_0))`:
    ///
    ///     output   [T, B, D·H], or [B, T, D·H] with --batch-first; zero past each length
    ///     h_n      [D·L, B, H]    hidden state at each sequence's last valid step
    ///     c_n      [D·L, B, H]    cell state at each sequence's last valid step
    ///                             (not for a GRU: `output, h_n = gru(input, h_0)`)
    ///
    /// OUT is written whole or not at all, and may not be MODEL or IN.
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// List the GPU adapters wgpu can see, with their key features and
    /// limits; with --weights, first describe that checkpoint
    ///
    /// With --weights MODEL, prints the architecture inferred from MODEL's
    /// names, shapes and metadata (LSTM or GRU, sizes, layers, directions,
    /// bias, projection, activation) and its parameter count.
    Info(InfoArgs),
    /// Check this machine's GPUs against PyTorch: the first thing to run
    ///
    /// On each adapter (or the one --adapter names), runs PyTorch float64
    /// fixtures compiled into this binary through the GPU engine with the
    /// kernels the autotuner picks there: forward and gradients, one and two
    /// layers, bidirectional, lengths, a given state and a projection, in f32
    /// and (where the adapter has SHADER_F16) f16. Prints PASS or FAIL with
    /// the largest error against PyTorch, the tuner's choices and times, and
    /// the adapter's features and limits. Exits with status 1 if any fails.
    #[command(verbatim_doc_comment)]
    Doctor(DoctorArgs),
}

#[derive(Args, Debug)]
struct DoctorArgs {
    /// Only the adapter whose name contains this (case-insensitive).
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,
    /// Run the .safetensors fixtures in DIR (the format of
    /// tools/make_fixtures.py) instead of the built-in ones.
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The model: an nn.LSTM or nn.GRU state_dict saved with safetensors
    #[arg(long, value_name = "MODEL.safetensors")]
    weights: PathBuf,

    /// Key prefix of the LSTM's tensors in MODEL, such as `lstm.`
    ///
    /// Keys outside the prefix are then ignored, so the LSTM may be one module
    /// of a larger state_dict. Without --prefix, the prefix every key shares is
    /// used (none, `lstm.`, `encoder.rnn.`, ...).
    #[arg(long, value_name = "PREFIX", verbatim_doc_comment)]
    prefix: Option<String>,

    /// The tensors to run: `input`, and optionally `h_0`, `c_0`, `lengths`
    #[arg(long, value_name = "IN.safetensors")]
    input: PathBuf,

    /// Where to write `output`, `h_n` and `c_n`
    #[arg(long, value_name = "OUT.safetensors")]
    output: PathBuf,

    /// Where to run: a hardware GPU if there is one, else the CPU engine
    /// (auto); the GPU through wgpu, software adapters included (gpu); or the
    /// CPU engine (cpu)
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,

    /// `input` is [B, T, I] and `output` [B, T, D·H] (PyTorch's batch_first=True)
    #[arg(long)]
    batch_first: bool,

    /// How the GPU stores weights and activations: f32, or f16 with f32
    /// accumulation (needs an adapter with SHADER_F16; outputs within about
    /// 2e-2 of f32). Inputs and outputs are F32 either way.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PrecisionArg {
    /// Everything in f32
    F32,
    /// f16 weights and activations, f32 accumulation and cell state (GPU only)
    F16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F16 => Precision::F16,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceArg {
    /// A hardware GPU if there is one, else the CPU engine (`Device::auto`)
    Auto,
    /// The first high-performance GPU wgpu finds (set WGPU_ADAPTER_NAME to choose)
    Gpu,
    /// The CPU engine
    Cpu,
}

/// What can go wrong in the tool: the library's typed errors, or a problem
/// with the files or arguments the tool itself checks.
#[derive(Debug)]
enum CliError {
    Lstm(LstmError),
    Invalid(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Lstm(e) => write!(f, "{e}"),
            CliError::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl From<LstmError> for CliError {
    fn from(e: LstmError) -> Self {
        CliError::Lstm(e)
    }
}

type CliResult<T> = Result<T, CliError>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever an underlying message holds.
            let msg = e.to_string().replace(['\n', '\r'], " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> CliResult<()> {
    match cli.command {
        Command::Run(args) => run_forward(&args),
        Command::Info(args) => info(&args),
        Command::Doctor(args) => {
            match doctor::doctor(args.adapter.as_deref(), args.fixtures.as_deref())? {
                true => Ok(()),
                false => Err(CliError::Invalid(
                    "doctor: a check failed on this machine (see the FAIL lines above)".into(),
                )),
            }
        }
    }
}

// ---- run ----

fn run_forward(args: &RunArgs) -> CliResult<()> {
    refuse_overwrite(
        &args.output,
        &[("--input", &args.input), ("--weights", &args.weights)],
    )?;
    if args.device == DeviceArg::Cpu && args.precision == PrecisionArg::F16 {
        return Err(CliError::Invalid(
            "--precision f16 runs on the GPU only; the CPU engine computes in f32 \
             (drop --precision or use --device gpu)"
                .into(),
        ));
    }

    let mut weights = load_weights(&args.weights, args.prefix.as_deref())?;
    weights.config.batch_first = args.batch_first;

    let file = TensorFile::open(&args.input)?;
    let tensors = read_inputs(&file, &args.input, args.batch_first)?;
    let mut x = LstmInput::new(&tensors.input);
    x.h_0 = tensors.h_0.as_ref();
    x.c_0 = tensors.c_0.as_ref();
    x.lengths = tensors.lengths.as_deref();
    // The same checks either engine makes, before a GPU is started.
    x.validate(&weights.config)?;

    let device = match args.device {
        DeviceArg::Auto => Device::auto(),
        DeviceArg::Gpu => Device::gpu()?,
        DeviceArg::Cpu => Device::cpu(),
    };
    if !device.is_gpu() && args.precision == PrecisionArg::F16 {
        return Err(CliError::Invalid(
            "--precision f16 runs on the GPU only, and no hardware GPU was found \
             (use --device gpu for a software adapter, or drop --precision)"
                .into(),
        ));
    }
    let device = device.with_precision(args.precision.into())?;
    let out = Lstm::new(&device, &weights)?.forward(&x)?;

    let mut named = vec![("output", &out.output), ("h_n", &out.h_n)];
    if weights.config.cell == Cell::Lstm {
        named.push(("c_n", &out.c_n));
    }
    save_tensors(&args.output, &named, None)?;
    Ok(())
}

/// Refuses an OUT path that names the same file as one of the inputs, so
/// nothing the user gave is overwritten. OUT need not exist yet: then its
/// folder is resolved and its file name joined.
fn refuse_overwrite(output: &Path, inputs: &[(&str, &Path)]) -> CliResult<()> {
    let out = resolve(output)?;
    for (flag, path) in inputs {
        // An input that cannot be resolved does not exist; reading it reports that.
        if path.canonicalize().is_ok_and(|p| p == out) {
            return Err(CliError::Invalid(format!(
                "--output `{}` is the same file as {flag} `{}`; refusing to overwrite it \
                 (choose another OUT path)",
                output.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

fn resolve(path: &Path) -> CliResult<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Ok(p);
    }
    let name = path
        .file_name()
        .ok_or_else(|| CliError::Invalid(format!("--output `{}` names no file", path.display())))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().map_err(|source| LstmError::Io {
        action: "find the folder of --output",
        path: parent.to_path_buf(),
        source,
    })?;
    Ok(parent.join(name))
}

/// Loads MODEL; with an explicit prefix that matches nothing, says which
/// prefix the file does use.
fn load_weights(path: &Path, prefix: Option<&str>) -> CliResult<LstmWeights<f32>> {
    let file = TensorFile::open(path)?;
    let names = file.names();
    // The prefix in front of `weight_ih_l0`, for hints.
    let anchor = || {
        names
            .iter()
            .filter_map(|n| n.strip_suffix("weight_ih_l0"))
            .find(|p| p.is_empty() || p.ends_with('.'))
    };
    match prefix {
        Some(p) => {
            if !p.is_empty() && !names.iter().any(|n| n.starts_with(p)) {
                let hint = match anchor() {
                    Some(a) => {
                        format!("; the LSTM's keys there start with `{a}` (try --prefix '{a}')")
                    }
                    None => names
                        .first()
                        .map_or(String::new(), |n| format!("; its keys look like `{n}`")),
                };
                return Err(CliError::Invalid(format!(
                    "--prefix `{p}` matches no tensor in `{}`{hint}",
                    path.display()
                )));
            }
            Ok(LstmWeights::from_tensor_file(
                &file,
                SafetensorsPrefix::Exact(p),
            )?)
        }
        None => LstmWeights::from_tensor_file(&file, SafetensorsPrefix::Auto).map_err(|e| {
            match (&e, anchor()) {
                // Keys outside the LSTM, e.g. a head beside `encoder.rnn.`.
                (LstmError::UnexpectedTensor { .. }, Some(a))
                    if detect_prefix(names.iter().copied()).is_none() =>
                {
                    CliError::Invalid(format!(
                        "{e}; in `{}` the LSTM's keys start with `{a}`: pass --prefix '{a}' \
                         to load it and ignore the other keys",
                        path.display()
                    ))
                }
                _ => e.into(),
            }
        }),
    }
}

/// The tensors of IN, dtype-checked.
struct Inputs {
    input: Tensor<f32>,
    h_0: Option<Tensor<f32>>,
    c_0: Option<Tensor<f32>>,
    lengths: Option<Vec<usize>>,
}

const IN_NAMES: [&str; 4] = ["input", "h_0", "c_0", "lengths"];

fn read_inputs(file: &TensorFile, path: &Path, batch_first: bool) -> CliResult<Inputs> {
    let extra: Vec<&str> = file
        .names()
        .into_iter()
        .filter(|n| !IN_NAMES.contains(n))
        .collect();
    if let Some(name) = extra.first() {
        let others = match extra.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        return Err(CliError::Invalid(format!(
            "unexpected tensor `{name}`{others} in `{}`; IN may hold only \
             `input`, `h_0`, `c_0` and `lengths`",
            path.display(),
        )));
    }

    let float = |name: &str| -> CliResult<Option<Tensor<f32>>> {
        let Some(dtype) = file.dtype(name) else {
            return Ok(None);
        };
        if dtype != Dtype::F32 {
            return Err(CliError::Invalid(format!(
                "tensor `{name}` in `{}` has dtype {dtype:?}; expected F32",
                path.display(),
            )));
        }
        Ok(Some(file.float::<f32>(name)?))
    };
    let input = float("input")?.ok_or_else(|| LstmError::MissingTensor {
        name: "input".into(),
        hint: format!(
            " in `{}` (IN must hold `input` [T, B, I] and may hold `h_0`, `c_0` and `lengths`)",
            path.display()
        ),
    })?;
    let h_0 = float("h_0")?;
    let c_0 = float("c_0")?;

    let lengths = match (file.dtype("lengths"), file.shape("lengths")) {
        (None, _) | (_, None) => None,
        (Some(dtype), Some(shape)) => {
            if !matches!(dtype, Dtype::I64 | Dtype::I32) {
                return Err(CliError::Invalid(format!(
                    "tensor `lengths` in `{}` has dtype {dtype:?}; expected I64 or I32",
                    path.display(),
                )));
            }
            if shape.len() != 1 {
                return Err(CliError::Invalid(format!(
                    "tensor `lengths` in `{}` has shape {shape:?}; expected [B], one length per sequence",
                    path.display(),
                )));
            }
            let values = file.integers("lengths")?;
            // T, for the message, as the library's own check words it.
            let seq_len = match (input.shape(), batch_first) {
                ([t, _, _], false) | ([_, t, _], true) => format!("{t} (T)"),
                _ => "T".to_string(),
            };
            let lengths = values
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    usize::try_from(v).map_err(|_| {
                        CliError::Invalid(format!(
                            "invalid value in `lengths`: lengths[{i}] = {v}, but each length \
                             must be in 1..={seq_len}"
                        ))
                    })
                })
                .collect::<CliResult<Vec<usize>>>()?;
            Some(lengths)
        }
    };
    Ok(Inputs {
        input,
        h_0,
        c_0,
        lengths,
    })
}

// ---- info ----

/// `wgpu-lstm info`'s arguments.
#[derive(clap::Args, Debug)]
struct InfoArgs {
    /// An nn.LSTM or nn.GRU state_dict saved with safetensors, to describe.
    #[arg(long, value_name = "MODEL")]
    weights: Option<PathBuf>,
    /// The parameters' prefix in MODEL (detected when absent), as for `run`.
    #[arg(long)]
    prefix: Option<String>,
}

fn info(args: &InfoArgs) -> CliResult<()> {
    if let Some(path) = &args.weights {
        let w = load_weights(path, args.prefix.as_deref())?;
        let c = &w.config;
        let module = match c.cell {
            Cell::Lstm => "nn.LSTM",
            Cell::Gru => "nn.GRU",
        };
        let params: usize = w.named_params().iter().map(|(_, _, p)| p.len()).sum();
        println!("model: {}", path.display());
        println!(
            "  {module}(input_size={}, hidden_size={}, num_layers={}, bias={}, bidirectional={}{})",
            c.input_size,
            c.hidden_size,
            c.num_layers,
            if c.bias { "True" } else { "False" },
            if c.bidirectional { "True" } else { "False" },
            if c.proj_size > 0 {
                format!(", proj_size={}", c.proj_size)
            } else {
                String::new()
            }
        );
        println!("  cell:         {} ({} gates)", c.cell, c.gates());
        println!("  activation:   {}", c.activation);
        println!("  parameters:   {params}");
        println!(
            "  states:       h [D·L, B, {}]{}",
            c.hidden_out(),
            match c.cell {
                Cell::Lstm => format!(", c [D·L, B, {}]", c.hidden_size),
                Cell::Gru => " (no cell state)".to_string(),
            }
        );
    }
    let adapters = list_adapters();
    if adapters.is_empty() && args.weights.is_some() {
        println!("no GPU adapter: the model runs on the CPU engine (--device cpu)");
        return Ok(());
    }
    if adapters.is_empty() {
        let detail = match std::env::var("WGPU_BACKEND") {
            Ok(b) => format!(" (wgpu enumerated none with WGPU_BACKEND={b:?})"),
            Err(_) => " (wgpu enumerated none on any backend)".to_string(),
        };
        return Err(LstmError::NoAdapter { detail }.into());
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    for (i, a) in adapters.iter().enumerate() {
        let info = &a.info;
        let l = &a.limits;
        println!("adapter {i}: {}", info.name);
        println!("  backend:      {:?}", info.backend);
        println!("  device type:  {:?}", info.device_type);
        println!("  driver:       {}", info.driver);
        println!("  driver info:  {}", info.driver_info);
        println!(
            "  vendor/device id: {:#06x} / {:#06x}",
            info.vendor, info.device
        );
        println!("  features:");
        for (name, f) in [
            ("SHADER_F16", wgpu::Features::SHADER_F16),
            ("SUBGROUP", wgpu::Features::SUBGROUP),
            ("TIMESTAMP_QUERY", wgpu::Features::TIMESTAMP_QUERY),
        ] {
            println!("    {name:<16} {}", yes_no(a.features.contains(f)));
        }
        println!("  limits:");
        let bytes = [
            (
                "max_storage_buffer_binding_size",
                l.max_storage_buffer_binding_size,
            ),
            ("max_buffer_size", l.max_buffer_size),
            (
                "max_compute_workgroup_storage_size",
                l.max_compute_workgroup_storage_size as u64,
            ),
        ];
        for (name, v) in bytes {
            println!("    {name:<38} {v} ({})", human_bytes(v));
        }
        for (name, v) in [
            (
                "max_compute_workgroups_per_dimension",
                l.max_compute_workgroups_per_dimension,
            ),
            (
                "max_compute_invocations_per_workgroup",
                l.max_compute_invocations_per_workgroup,
            ),
            (
                "max_storage_buffers_per_shader_stage",
                l.max_storage_buffers_per_shader_stage,
            ),
        ] {
            println!("    {name:<38} {v}");
        }
    }
    println!(
        "`wgpu-lstm run` uses the adapter wgpu picks (high-performance preferred); \
         set WGPU_ADAPTER_NAME to a part of a name above to choose, WGPU_BACKEND to \
         restrict the backend"
    );
    Ok(())
}

fn human_bytes(v: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 || x.fract() == 0.0 {
        format!("{x} {}", UNITS[unit])
    } else {
        format!("{x:.1} {}", UNITS[unit])
    }
}
