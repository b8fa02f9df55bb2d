//! The `ipg-switch` command: run the daemon, manage hosted bills, check a configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ipg_switch::settings::{InstitutionMode, LogFormat, Settings};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "ipg-switch",
    version,
    about = "Virtual-account bill payment switch for IPG institutions"
)]
struct Cli {
    /// Configuration file layered over the built-in defaults.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGINT or SIGTERM.
    Run,
    /// Manage hosted bills.
    Bill {
        #[command(subcommand)]
        command: BillCommand,
    },
    /// Load and validate the configuration, then exit.
    CheckConfig,
    /// Webhook delivery to institutions.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Payments forwarded to passive institutions.
    Passive {
        #[command(subcommand)]
        command: PassiveCommand,
    },
    /// Rebuild Redis from the whole journal (docs/journal.md): bills, payments, ledger,
    /// balances, forwarded payments, reference bindings. Stop the daemons first.
    Restore {
        /// Apply even though Redis is not empty (applying never replaces a newer record).
        #[arg(long)]
        force: bool,
    },
    /// Compare Redis with the journal; exit code 0 only when they agree.
    Verify {
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A business day's statement from the journal (docs/statements.md).
    Statement {
        /// The business day, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        #[arg(long, conflicts_with = "channel", required_unless_present = "channel")]
        institution: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
    },
    /// A bank's own list of a day's debits against the switch's; exit code 0 only when
    /// everything matches.
    Reconcile {
        #[arg(long)]
        channel: String,
        #[arg(long)]
        date: String,
        /// The bank's CSV (columns: [reconcile] in the configuration).
        #[arg(long)]
        file: PathBuf,
        /// Print the findings as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PassiveCommand {
    /// Print an institution's forwarded payments, newest first, one JSON object a line
    /// (reconciliation).
    List {
        #[arg(long)]
        institution: String,
        /// Only payments in this state: forwarding, paid, refused, in_doubt, reversing,
        /// reversed.
        #[arg(long)]
        state: Option<String>,
        /// At most this many payments are read.
        #[arg(long, default_value_t = 1000)]
        limit: isize,
    },
}

async fn passive_command(settings: &Settings, cmd: PassiveCommand) -> anyhow::Result<()> {
    // Reads only: the routing and the store, no journal (no broker needed).
    let routing = settings.routing();
    match cmd {
        PassiveCommand::List {
            institution,
            state,
            limit,
        } => {
            match routing.by_code(&institution) {
                Some(i) if i.mode == InstitutionMode::Passive => {}
                Some(_) => bail!("institution {institution} is not passive"),
                None => bail!("institution {institution} is not configured"),
            }
            let store = ipg_switch::store::Store::new(&settings.redis)?;
            let mut out = std::io::stdout().lock();
            for p in store
                .passive_payments(&institution, 0, limit.max(1))
                .await?
            {
                if state.as_deref().is_some_and(|s| s != p.state.as_str()) {
                    continue;
                }
                use std::io::Write;
                writeln!(out, "{}", serde_json::to_string(&p)?)?;
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Run only the webhook dispatcher until SIGINT or SIGTERM (needs real brokers).
    Run,
    /// Re-send dead-lettered webhook jobs (attempts reset); all, or those matching.
    Replay {
        /// Only this institution's jobs.
        #[arg(long)]
        institution: Option<String>,
        /// Only the job with this event id.
        #[arg(long)]
        id: Option<String>,
    },
}

async fn webhook_command(settings: Settings, cmd: WebhookCommand) -> anyhow::Result<()> {
    match cmd {
        WebhookCommand::Run => {
            ipg_switch::webhook::run_standalone(settings.webhook_wiring(), shutdown_signal())
                .await?;
        }
        WebhookCommand::Replay { institution, id } => {
            let filter = ipg_switch::webhook::replay::Filter { institution, id };
            let r =
                ipg_switch::webhook::replay::replay(&settings.webhook_wiring(), &filter).await?;
            println!(
                "read {} dead letter(s), replayed {} job(s), skipped {} malformed",
                r.read, r.replayed, r.skipped
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum BillCommand {
    /// Create a bill from an IPG "Create New Bill" JSON body and print it.
    Create {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Revoke a bill by its hash and print it.
    Revoke {
        hash: String,
        /// Institution of the bill (default: search every hosted institution).
        #[arg(long)]
        institution: Option<String>,
    },
}

fn init_tracing(s: &Settings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&s.log.level));
    // Colours only for a person at a terminal, never in files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match s.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn bill_command(settings: &Settings, cmd: BillCommand) -> anyhow::Result<()> {
    let switch = ipg_switch::build_switch(settings)?;
    let bill = match cmd {
        BillCommand::Create { file } => {
            let raw =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let body: serde_json::Value = serde_json::from_slice(&raw)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let code = body
                .get("institution_code")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let Some(inst) = switch.routing.by_code(code) else {
                bail!("institution_code {code:?} is not configured");
            };
            if inst.mode != InstitutionMode::Hosted {
                bail!("institution {code} is passive: its bills live in its own system");
            }
            switch.hosted.create_bill(inst, &body).await?
        }
        BillCommand::Revoke { hash, institution } => {
            let mut found = None;
            for inst in switch.routing.institutions() {
                if institution.as_deref().is_some_and(|c| c != inst.code)
                    || inst.mode != InstitutionMode::Hosted
                {
                    continue;
                }
                if switch.hosted.bill(&inst.code, &hash).await?.is_some() {
                    found = Some(inst.clone());
                    break;
                }
            }
            let Some(inst) = found else {
                bail!("bill {hash} not found")
            };
            switch.hosted.revoke_bill(&inst, &hash).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&bill)?);
    Ok(())
}

/// A progress bar with events/s on a terminal (stderr), nothing otherwise.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new() -> Bar {
        use std::io::IsTerminal;
        Bar(std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} events {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        }))
    }
}

impl ipg_switch::journal::Progress for Bar {
    fn start(&mut self, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
        }
    }
    fn advance(&mut self, events: u64) {
        if let Some(b) = &self.0 {
            b.inc(events);
        }
    }
}

fn journal_of(settings: &Settings) -> anyhow::Result<ipg_switch::journal::Journal> {
    if settings.kafka.is_embedded() {
        bail!("kafka.bootstrap_servers is \"embedded\": the journal lives in the broker; point the command at it (with the demo: source .run/demo.env)");
    }
    Ok(settings.journal(&settings.kafka.bootstrap_servers))
}

async fn restore(settings: &Settings, force: bool) -> anyhow::Result<()> {
    let journal = journal_of(settings)?;
    let store = ipg_switch::store::Store::new(&settings.redis)?;
    let keys = store.count_keys("ipg:*").await?;
    if keys > 0 && !force {
        bail!("Redis holds {keys} ipg:* key(s): restore rebuilds an empty Redis (use --force to apply the journal over it; a record newer in Redis is kept)");
    }
    let mut bar = Bar::new();
    let report = journal
        .replay(&store, ipg_switch::journal::From::Beginning, &mut bar)
        .await?;
    if let Some(b) = &bar.0 {
        b.finish_and_clear();
    }
    println!(
        "restored: {} events, {} records set, {} unreadable, {:.1} s ({:.0} events/s)",
        report.events,
        report.records_set,
        report.unreadable,
        report.seconds,
        report.events as f64 / report.seconds.max(1e-9)
    );
    if report.unreadable > 0 {
        bail!(
            "{} journal event(s) did not parse (see the log)",
            report.unreadable
        );
    }
    Ok(())
}

async fn verify(settings: &Settings, json: bool) -> anyhow::Result<bool> {
    let journal = journal_of(settings)?;
    let store = ipg_switch::store::Store::new(&settings.redis)?;
    let mut bar = Bar::new();
    let v = ipg_switch::journal::verify::verify(&journal, &store, &mut bar).await?;
    if let Some(b) = &bar.0 {
        b.finish_and_clear();
    }
    if json {
        let counts: Vec<serde_json::Value> = v
            .counts
            .iter()
            .map(|c| serde_json::json!({"records": c.kind, "journal": c.journal, "redis": c.redis, "differing": c.differing}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"agrees": v.agrees(), "events": v.events, "unreadable": v.unreadable,
                "counts": counts, "differences": v.total_differences, "first_differences": v.differences})
        );
    } else {
        print!("{}", v.table());
    }
    Ok(v.agrees())
}

fn business_day(settings: &Settings, date: &str) -> anyhow::Result<ipg_switch::statement::Day> {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .with_context(|| format!("--date {date:?} is not YYYY-MM-DD"))?;
    Ok(ipg_switch::statement::Day::new(
        d,
        settings.switch.offset,
        settings.statement.cutoff_hour,
    ))
}

async fn journal_events(
    settings: &Settings,
) -> anyhow::Result<Vec<ipg_switch::store::journal::Event>> {
    use ipg_switch::statement::Source;
    journal_of(settings)?
        .events()
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

async fn statement(
    settings: &Settings,
    date: &str,
    institution: Option<String>,
    channel: Option<String>,
    format: &str,
) -> anyhow::Result<()> {
    use ipg_switch::statement::{Scope, Statement};
    let day = business_day(settings, date)?;
    let scope = match (institution, channel) {
        (Some(i), _) => Scope::Institution(i),
        (None, Some(c)) => Scope::Channel(c),
        (None, None) => bail!("--institution or --channel"),
    };
    if !matches!(format, "csv" | "json") {
        bail!("--format must be csv or json");
    }
    let events = journal_events(settings).await?;
    let s = Statement::build(&events, &scope, &day, settings.switch.offset);
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", s.to_csv());
    }
    Ok(())
}

async fn reconcile(
    settings: &Settings,
    channel: &str,
    date: &str,
    file: &std::path::Path,
    json: bool,
) -> anyhow::Result<bool> {
    use ipg_switch::statement::{read_bank_csv, Reconciliation, Scope, Statement};
    let day = business_day(settings, date)?;
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let bank = read_bank_csv(&data, &settings.reconcile)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let events = journal_events(settings).await?;
    let s = Statement::build(
        &events,
        &Scope::Channel(channel.to_owned()),
        &day,
        settings.switch.offset,
    );
    let r = Reconciliation::of(&bank, &s);
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", r.table());
    }
    Ok(r.clean())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ipg-switch: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::CheckConfig | Command::Run) {
        if let Err(e) = settings.check_serving() {
            eprintln!("ipg-switch: {e}");
            return ExitCode::from(2);
        }
    }
    if !matches!(cli.command, Command::CheckConfig | Command::Run) {
        // A person at the CLI sees which systems a command talks to.
        eprintln!("{}", talks_to(&settings, &cli.command));
    }
    let redis_url = settings.redis.url.clone();
    let result = match cli.command {
        Command::CheckConfig => {
            println!(
                "configuration OK: {} channel(s), {} institution(s)",
                settings.channels.len(),
                settings.institutions.len()
            );
            Ok(())
        }
        Command::Run => {
            init_tracing(&settings);
            tokio::runtime::Runtime::new()
                .context("starting the runtime")
                .and_then(|rt| {
                    rt.block_on(ipg_switch::run(settings, shutdown_signal()))
                        .map_err(Into::into)
                })
        }
        Command::Webhook { command } => {
            init_tracing(&settings);
            tokio::runtime::Runtime::new()
                .context("starting the runtime")
                .and_then(|rt| rt.block_on(webhook_command(settings, command)))
        }
        Command::Bill { command } => tokio::runtime::Runtime::new()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(bill_command(&settings, command))),
        Command::Passive { command } => tokio::runtime::Runtime::new()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(passive_command(&settings, command))),
        Command::Restore { force } => tokio::runtime::Runtime::new()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(restore(&settings, force))),
        Command::Statement {
            date,
            institution,
            channel,
            format,
        } => tokio::runtime::Runtime::new()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(statement(&settings, &date, institution, channel, &format))),
        Command::Reconcile {
            channel,
            date,
            file,
            json,
        } => match tokio::runtime::Runtime::new()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(reconcile(&settings, &channel, &date, &file, json)))
        {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Verify { json } => {
            match tokio::runtime::Runtime::new()
                .context("starting the runtime")
                .and_then(|rt| rt.block_on(verify(&settings, json)))
            {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipg-switch: {}", explain(&e, &redis_url));
            ExitCode::FAILURE
        }
    }
}

/// The systems `cmd` uses, for a line on stderr: the Redis URL (password hidden) and, for
/// commands that use Kafka, the brokers.
fn talks_to(s: &Settings, cmd: &Command) -> String {
    let redis = ipg_switch::store::redacted(&s.redis.url);
    match cmd {
        Command::Webhook { .. }
        | Command::Restore { .. }
        | Command::Verify { .. }
        | Command::Statement { .. }
        | Command::Reconcile { .. } => format!(
            "ipg-switch: redis {redis}, kafka {} (set IPG__REDIS__URL / IPG__KAFKA__BOOTSTRAP_SERVERS or --config to change)",
            s.kafka.bootstrap_servers
        ),
        _ => format!("ipg-switch: redis {redis} (set IPG__REDIS__URL or --config to change)"),
    }
}

/// An error and its causes, each said once (a Redis error repeats its I/O cause in its own
/// text), and, when Redis could not be reached, which Redis.
fn explain(e: &anyhow::Error, redis_url: &str) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    let unreachable = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ipg_switch::store::StoreError>(),
            Some(ipg_switch::store::StoreError::Unavailable(_))
        ) || matches!(
            c.downcast_ref::<ipg_switch::error::SwitchError>(),
            Some(ipg_switch::error::SwitchError::Store(
                ipg_switch::store::StoreError::Unavailable(_)
            ))
        )
    });
    if unreachable {
        out = format!(
            "cannot reach Redis at {}: {out}",
            ipg_switch::store::redacted(redis_url)
        );
    }
    out
}
