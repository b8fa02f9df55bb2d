//! The `ipg-switch` command: run the daemon, manage hosted bills, check a configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{ArgGroup, Parser, Subcommand};
use ipg_switch::settings::{InstitutionMode, LogFormat, Settings};
use tracing_subscriber::EnvFilter;

// The help's shared parts: every command's `after_help` is built by `help` from these, so
// the exit codes and the environment are said the same way everywhere (tests/cli.rs checks
// that every command has them, an example, and a description for every argument).

/// Exit code 2, the same for every command (clap's usage errors and `Settings::load`).
const EXIT_2: &str =
    "  2  invalid arguments, or a configuration that does not load (the message names the key)";
/// Exit code 2 of the commands that also check that the configuration has something to serve.
const EXIT_2_SERVING: &str =
    "  2  invalid arguments, or a configuration that does not load or has nothing to serve";
/// Exit code 1 of a command whose only non-zero outcome is a failure.
const EXIT_1: &str = "  1  failed; the reason is on stderr (ipg-switch: ...)";
/// The Redis, for the commands that use it.
const ENV_REDIS: &str = "  IPG__REDIS__URL                the Redis (redis.url)";
/// The brokers, for the commands that use them.
const ENV_KAFKA: &str =
    "  IPG__KAFKA__BOOTSTRAP_SERVERS  the brokers (kafka.bootstrap_servers; the demo's \
                         address changes every run: source .run/demo.env)";
/// Every configuration key, for every command.
const ENV_ANY: &str = "  IPG__SECTION__KEY              any configuration key, over the --config file \
                         (pipeline.lanes is IPG__PIPELINE__LANES); IPG_ENV=NAME adds config/NAME.toml \
                         under it";
/// The daemons' log filter.
const ENV_LOG: &str =
    "  RUST_LOG                       log filter (default: log.level), e.g. ipg_switch=debug";
/// The demo's first step, before a command that needs its broker.
const DEMO_ENV: &str =
    "  source .run/demo.env    # written by scripts/run-demo.sh while the demo runs";

/// A command's `after_help`: its exit codes, what it reads from the environment, and an
/// example.
fn help(exits: &[&str], env: &[&str], example: &[&str]) -> String {
    format!(
        "Exit codes:\n{}\n\nEnvironment (it wins over the --config file):\n{}\n\nExample:\n{}",
        exits.join("\n"),
        env.join("\n"),
        example.join("\n")
    )
}

#[derive(Parser)]
#[command(
    name = "ipg-switch",
    version,
    about = "Virtual-account bill payment switch for IPG institutions",
    after_help = help(
        &["  0  success", EXIT_1, EXIT_2,
          "  (verify and reconcile also exit 1 when they find a difference: see their help)"],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY],
        &["  scripts/run-demo.sh     # the demo: Redis, the daemon, demo bills", DEMO_ENV,
          "  ipg-switch --config config/demo.toml passive list --institution PST01"],
    )
)]
struct Cli {
    /// Configuration file (TOML) layered over the built-in defaults; IPG__SECTION__KEY
    /// environment variables win over it. The demo's: config/demo.toml.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGINT or SIGTERM.
    #[command(after_help = help(
        &["  0  stopped by SIGINT or SIGTERM, the work in flight drained",
          "  1  failed to start or while running (e.g. a port taken, Redis or the brokers unreachable)",
          EXIT_2_SERVING],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY, ENV_LOG],
        &["  ipg-switch --config config/demo.toml run    # what scripts/run-demo.sh runs, after its Redis"],
    ))]
    Run,
    /// Manage hosted bills (Redis and the brokers: every change is journaled).
    #[command(after_help = help(
        &["  0  the bill was printed", EXIT_1, EXIT_2],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY],
        &[DEMO_ENV, "  ipg-switch --config config/demo.toml bill create --file demo/bills/infaq-open.json"],
    ))]
    Bill {
        #[command(subcommand)]
        command: BillCommand,
    },
    /// Load and validate the configuration, then exit (reaches neither Redis nor the brokers).
    #[command(after_help = help(
        &["  0  the configuration is valid",
          EXIT_2_SERVING],
        &[ENV_ANY, "  (and the variables the configuration names: institutions' api_key_env, ...)"],
        &["  ipg-switch --config config/demo.toml check-config"],
    ))]
    CheckConfig,
    /// Webhook delivery to institutions.
    #[command(after_help = help(
        &["  0  success", EXIT_1, EXIT_2],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY],
        &[DEMO_ENV, "  ipg-switch --config config/demo.toml webhook replay --institution SCH01"],
    ))]
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Payments forwarded to passive institutions.
    #[command(after_help = help(
        &["  0  success", EXIT_1, EXIT_2],
        &[ENV_REDIS, "  (no broker: passive list reads Redis only)", ENV_ANY],
        &["  ipg-switch --config config/demo.toml passive list --institution PST01"],
    ))]
    Passive {
        #[command(subcommand)]
        command: PassiveCommand,
    },
    /// Rebuild Redis from each institution's newest snapshot and the journal after it (or
    /// the whole journal: --from-beginning) (docs/journal.md, docs/retention.md): bills,
    /// payments, ledger, balances, forwarded payments, reference bindings, within the
    /// retention windows. Stop the daemons first.
    #[command(after_help = help(
        &["  0  restored: every journal event applied",
          "  1  failed, Redis not empty without --force, or some events did not parse (stderr says which)",
          EXIT_2],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY],
        &[DEMO_ENV, "  ipg-switch --config config/demo.toml restore --force    # the demo's Redis is live: --force"],
    ))]
    Restore {
        /// Apply even though Redis is not empty (applying never replaces a newer record).
        #[arg(long)]
        force: bool,
        /// Read the whole journal, not the newest snapshots first.
        #[arg(long)]
        from_beginning: bool,
    },
    /// Take a snapshot of the working set now (docs/retention.md, "Snapshots"): of every
    /// configured institution, or of one. The daemon takes one every
    /// journal.snapshot_interval_ms by itself.
    #[command(after_help = help(
        &["  0  every snapshot taken (one line each: events, bytes, where)", EXIT_1, EXIT_2],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY],
        &[DEMO_ENV, "  ipg-switch --config config/demo.toml snapshot --institution SCH01"],
    ))]
    Snapshot {
        /// Only this institution.
        #[arg(long)]
        institution: Option<String>,
    },
    /// Compare Redis with the journal; exit code 0 only when they agree.
    #[command(after_help = help(
        &["  0  Redis and the journal agree",
          "  1  they differ (the differences are printed on stdout), or the check failed (the reason is on stderr)",
          EXIT_2],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY],
        &[DEMO_ENV, "  ipg-switch --config config/demo.toml verify --json"],
    ))]
    Verify {
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A business day's statement from the journal (docs/statements.md), of one institution
    /// or one channel.
    #[command(
        group(ArgGroup::new("scope").args(["institution", "channel"]).required(true)),
        after_help = help(
            &["  0  the statement was printed", EXIT_1, EXIT_2],
            &[ENV_KAFKA, "  (no Redis: the statement is read from the journal alone)", ENV_ANY],
            &[DEMO_ENV, "  ipg-switch --config config/demo.toml statement --date 2026-12-06 --institution SCH01"],
        )
    )]
    Statement {
        /// The business day, YYYY-MM-DD (it starts at the hour statement.cutoff_hour, in
        /// switch.utc_offset).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: String,
        /// The statement of this institution (its code, e.g. SCH01); or give --channel.
        #[arg(long, value_name = "CODE")]
        institution: Option<String>,
        /// The statement of this channel (its code, e.g. bank_syariah); or give --institution.
        #[arg(long, value_name = "CODE")]
        channel: Option<String>,
        /// Output format.
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
    },
    /// A bank's own list of a day's debits against the switch's; exit code 0 only when
    /// everything matches.
    #[command(after_help = help(
        &["  0  everything matches",
          "  1  a finding (only at the bank, only at the switch, mismatched: printed on stdout), \
           or the check failed (the reason is on stderr)",
          EXIT_2],
        &[ENV_KAFKA, "  (no Redis: the switch's side is read from the journal)", ENV_ANY],
        &[DEMO_ENV, "  ipg-switch --config config/demo.toml reconcile --channel bank_syariah --date 2026-12-06 --file bank.csv"],
    ))]
    Reconcile {
        /// The bank's channel code (e.g. bank_syariah): the switch's side is this channel's
        /// statement.
        #[arg(long, value_name = "CODE")]
        channel: String,
        /// The business day, YYYY-MM-DD, as in `statement`.
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: String,
        /// The bank's CSV (columns: [reconcile] in the configuration).
        #[arg(long)]
        file: PathBuf,
        /// Print the findings as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a contract generated from the code: `asyncapi`, the AsyncAPI 3.0.0 document of
    /// the Kafka topics (docs/asyncapi.yaml), for the topics this configuration names;
    /// `openapi`, the OpenAPI 3.1 document of the HTTP API (docs/openapi.json), for the
    /// routes it serves.
    #[command(after_help = help(
        &["  0  the document was printed", EXIT_2],
        &[ENV_ANY, "  (reaches neither Redis nor the brokers)"],
        &["  ipg-switch contract asyncapi    # the committed docs/asyncapi.yaml: the defaults, no --config",
          "  ipg-switch contract openapi     # the committed docs/openapi.json: the defaults, no --config"],
    ))]
    Contract {
        /// Which contract (asyncapi: the Kafka topics, YAML; openapi: the HTTP API, JSON).
        #[arg(value_parser = ["asyncapi", "openapi"])]
        kind: String,
    },
}

#[derive(Subcommand)]
enum PassiveCommand {
    /// Print an institution's forwarded payments, newest first, one JSON object a line
    /// (reconciliation). Reads Redis only.
    #[command(after_help = help(
        &["  0  the payments were printed (none is not an error)",
          "  1  the institution is not a configured passive one, or Redis failed (stderr says which)",
          EXIT_2],
        &[ENV_REDIS, "  (no broker: the forwarded payments are read from Redis)", ENV_ANY],
        &["  ipg-switch --config config/demo.toml passive list --institution PST01 --state paid"],
    ))]
    List {
        /// The passive institution (its code, e.g. PST01).
        #[arg(long, value_name = "CODE")]
        institution: String,
        /// Only payments in this state.
        #[arg(long, value_parser = ["forwarding", "paid", "refused", "in_doubt", "reversing", "reversed"])]
        state: Option<String>,
        /// At most this many payments are read (the newest), before --state filters them.
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
    #[command(after_help = help(
        &["  0  stopped by SIGINT or SIGTERM",
          "  1  failed to start or while running (e.g. the broker is \"embedded\" or unreachable)",
          EXIT_2],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY, ENV_LOG],
        &["  ipg-switch --config /etc/ipg-switch/switch.toml webhook run    # beside daemons with webhook.enabled = false"],
    ))]
    Run,
    /// Re-send dead-lettered webhook jobs (attempts reset); all, or those matching.
    #[command(after_help = help(
        &["  0  the dead letters were read and replayed (the counts are printed)", EXIT_1, EXIT_2],
        &[ENV_KAFKA, "  (no Redis: the dead letters are read from and sent to the brokers)", ENV_ANY, ENV_LOG],
        &[DEMO_ENV, "  ipg-switch --config config/demo.toml webhook replay --institution SCH01"],
    ))]
    Replay {
        /// Only this institution's jobs (its code, e.g. SCH01).
        #[arg(long, value_name = "CODE")]
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
    #[command(after_help = help(
        &["  0  the bill was created and journaled; it is printed as JSON",
          "  1  refused (the reason is on stderr: an invalid field, a VA with an active bill) or failed \
           (Redis or the brokers unreachable, the journal topic missing: start the daemon once)",
          EXIT_2],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY],
        &[DEMO_ENV, "  ipg-switch --config config/demo.toml bill create --file demo/bills/infaq-open.json"],
    ))]
    Create {
        /// The bill: a JSON file holding the body of IPG's "Create New Bill" request, with
        /// its institution_code (e.g. demo/bills/infaq-open.json).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Issue many bills from a file, each on its own, with a result per row (docs/api.md,
    /// "Bulk issuance"). Idempotent: the same file again creates nothing.
    #[command(after_help = help(
        &["  0  every row was created, or found issued before (or is valid, with --dry-run)",
          "  1  some rows were refused (each named in the result file, with its field and reason), \
           or the file or the switch could not be read",
          EXIT_2],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY],
        &[DEMO_ENV, "  ipg-switch --config config/demo.toml bill import demo/import/spp-juli.csv --institution SCH01"],
    ))]
    Import {
        /// A JSON array of Create New Bill bodies (`.json`), or a CSV (any other name) whose
        /// header names their fields (institution_code may be left out: --institution).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The institution of rows without institution_code (CSV).
        #[arg(long, value_name = "CODE")]
        institution: Option<String>,
        /// Check every row, create nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where the per-row results go (CSV; default: FILE.result.csv).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Issue one period of a recurring bill: a template and a customer list give each
    /// customer's bill of the period (docs/api.md, "Recurring issuance"). Issuing the same
    /// period again creates nothing.
    #[command(after_help = help(
        &["  0  every customer's bill of the period was created, or found issued before (or is valid, with --dry-run)",
          "  1  some rows were refused (each named in the result file), or the files or the switch could not be read",
          EXIT_2],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY],
        &[DEMO_ENV, "  ipg-switch --config config/demo.toml bill recur --template demo/import/spp-template.json --customers demo/import/students.csv --period 2027-01"],
    ))]
    Recur {
        /// The bill template: a Create New Bill body without va_number and customer_name,
        /// with due_day (1-28); {period} and {va_number} are replaced in its text.
        #[arg(long, value_name = "FILE")]
        template: PathBuf,
        /// The customers: a CSV with va_number, customer_name and optionally total_amount,
        /// customer_email, customer_phone, customer_address.
        #[arg(long, value_name = "FILE")]
        customers: PathBuf,
        /// The period, YYYY-MM.
        #[arg(long, value_name = "YYYY-MM")]
        period: String,
        /// The institution, when the template names none.
        #[arg(long, value_name = "CODE")]
        institution: Option<String>,
        /// Check every row, create nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where the per-row results go (CSV; default: CUSTOMERS.<period>.result.csv).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Revoke a bill by its hash and print it.
    #[command(after_help = help(
        &["  0  the bill was revoked and journaled; it is printed as JSON",
          "  1  no such bill, or failed (Redis or the brokers unreachable; the reason is on stderr)",
          EXIT_2],
        &[ENV_REDIS, ENV_KAFKA, ENV_ANY],
        &[DEMO_ENV, "  ipg-switch --config config/demo.toml bill revoke 3f9c2a7e    # the hash bill create printed"],
    ))]
    Revoke {
        /// The bill's hash (8 characters, as printed by bill create and in the bill's JSON).
        #[arg(value_name = "HASH")]
        hash: String,
        /// Institution of the bill (its code; default: search every hosted institution).
        #[arg(long, value_name = "CODE")]
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

/// `bill import`: reads the file, issues every row, writes the results, and fails when a
/// row was refused.
async fn bill_import(
    switch: &ipg_switch::switch::Switch,
    file: &std::path::Path,
    institution: Option<String>,
    dry_run: bool,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    use ipg_switch::issuance;
    let raw = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let rows = if json {
        issuance::read_json(&raw)
    } else {
        issuance::read_csv(&raw, institution.as_deref().unwrap_or_default())
    }
    .with_context(|| format!("{} cannot be read", file.display()))?;
    let out = out.unwrap_or_else(|| beside(file, ".result.csv"));
    issue_rows(switch, rows, institution, dry_run, &out).await
}

/// `FILE` + `suffix`, as a path.
fn beside(file: &std::path::Path, suffix: &str) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Issues `rows` for their institution (the first row's, or `institution`), writes the
/// results to `out`, prints the counts; fails when a row was refused.
async fn issue_rows(
    switch: &ipg_switch::switch::Switch,
    mut rows: Vec<ipg_switch::issuance::Row>,
    institution: Option<String>,
    dry_run: bool,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use ipg_switch::issuance;
    // One institution per file: the first row's (or --institution).
    let code = institution
        .or_else(|| {
            rows.iter().find_map(|r| {
                r.body.as_ref().ok()?["institution_code"]
                    .as_str()
                    .map(str::to_owned)
            })
        })
        .unwrap_or_default();
    let Some(inst) = switch.routing.by_code(&code) else {
        bail!("institution {code:?} is not configured (give --institution or institution_code)");
    };
    if inst.mode != InstitutionMode::Hosted {
        bail!("institution {code} is passive: its bills live in its own system");
    }
    for r in rows.iter_mut() {
        if let Ok(serde_json::Value::Object(b)) = r.body.as_mut() {
            b.entry("institution_code")
                .or_insert_with(|| code.clone().into());
        }
    }
    let mut bar = Bar::new();
    ipg_switch::journal::Progress::start(&mut bar, rows.len() as u64);
    let results = issuance::issue_all(&switch.hosted, inst, rows, dry_run, || {
        ipg_switch::journal::Progress::advance(&mut bar, 1)
    })
    .await;
    std::fs::write(out, issuance::results_csv(&results))
        .with_context(|| format!("writing {}", out.display()))?;
    let (created, existing, valid, refused) = issuance::counts(&results);
    println!(
        "{} rows: {created} created, {existing} existing, {valid} valid (dry run), {refused} refused; results in {}",
        results.len(),
        out.display()
    );
    if refused > 0 {
        bail!("{refused} row(s) refused: see {}", out.display());
    }
    Ok(())
}

async fn bill_command(settings: &Settings, cmd: BillCommand) -> anyhow::Result<()> {
    let switch = ipg_switch::build_switch(settings)?;
    let bill = match cmd {
        BillCommand::Import {
            file,
            institution,
            dry_run,
            out,
        } => return bill_import(&switch, &file, institution, dry_run, out).await,
        BillCommand::Recur {
            template,
            customers,
            period,
            institution,
            dry_run,
            out,
        } => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).with_context(|| format!("reading {}", p.display()))
            };
            let rows = ipg_switch::issuance::recurring_rows(
                &read(&template)?,
                &read(&customers)?,
                &period,
                *switch.clock.now().offset(),
            )
            .context("the template, the customers or the period cannot be read")?;
            let out = out.unwrap_or_else(|| beside(&customers, &format!(".{period}.result.csv")));
            return issue_rows(&switch, rows, institution, dry_run, &out).await;
        }
        BillCommand::Create { file } => {
            let raw =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let body = ipg_switch::protocol::json::parse(&raw)
                .with_context(|| format!("{} is not one JSON bill", file.display()))?;
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

async fn snapshot(settings: &Settings, institution: Option<String>) -> anyhow::Result<()> {
    let journal = journal_of(settings)?;
    let store = ipg_switch::store::Store::new(&settings.redis)?
        .with_retention(ipg_switch::store::Retention::of(&settings.retention));
    let insts: Vec<String> = match institution {
        Some(i) if journal.institutions.contains(&i) => vec![i],
        Some(i) => bail!("institution {i} is not configured"),
        None => journal.institutions.clone(),
    };
    for inst in insts {
        let t = journal.take_snapshot(&store, &inst).await?;
        println!(
            "{}: snapshot {} of {} events, {} bytes in {} part(s) ({}[{}] {}..={}), journal from {}[{}] offset {}, {} ms",
            t.institution,
            t.snapshot_id,
            t.events,
            t.bytes,
            t.parts,
            settings.topics.snapshot,
            t.partition,
            t.first_offset,
            t.last_offset,
            settings.topics.journal,
            t.journal_partition,
            t.journal_offset,
            t.took_ms
        );
    }
    Ok(())
}

async fn restore(settings: &Settings, force: bool, from_beginning: bool) -> anyhow::Result<()> {
    let journal = journal_of(settings)?;
    let store = ipg_switch::store::Store::new(&settings.redis)?
        .with_retention(ipg_switch::store::Retention::of(&settings.retention));
    let keys = store.count_keys("ipg:*").await?;
    if keys > 0 && !force {
        bail!("Redis holds {keys} ipg:* key(s): restore rebuilds an empty Redis (use --force to apply the journal over it; a record newer in Redis is kept)");
    }
    let mut bar = Bar::new();
    let report = journal
        .replay(
            &store,
            if from_beginning {
                ipg_switch::journal::From::Beginning
            } else {
                ipg_switch::journal::From::Snapshots
            },
            &mut bar,
        )
        .await?;
    if let Some(b) = &bar.0 {
        b.finish_and_clear();
    }
    println!(
        "restored: {} institution(s) from a snapshot ({} events), then {} journal events, {} records set, {} unreadable, {:.1} s ({:.0} events/s)",
        report.snapshots,
        report.snapshot_events,
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
    let store = ipg_switch::store::Store::new(&settings.redis)?
        .with_retention(ipg_switch::store::Retention::of(&settings.retention));
    let mut bar = Bar::new();
    let v = ipg_switch::journal::verify::verify(&journal, &store, &mut bar).await?;
    if let Some(b) = &bar.0 {
        b.finish_and_clear();
    }
    if json {
        let counts: Vec<serde_json::Value> = v
            .counts
            .iter()
            .map(|c| serde_json::json!({"records": c.kind, "journal": c.journal, "retired": c.retired, "redis": c.redis, "differing": c.differing}))
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

/// The statement of `scope` for `day`, from the day's read of the journal.
async fn day_statement(
    settings: &Settings,
    scope: &ipg_switch::statement::Scope,
    day: &ipg_switch::statement::Day,
) -> anyhow::Result<ipg_switch::statement::Statement> {
    use ipg_switch::statement::{Source, Statement};
    let read = journal_of(settings)?
        .day(scope, day)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Statement::of_day(&read, scope, day, settings.switch.offset))
}

async fn statement(
    settings: &Settings,
    date: &str,
    institution: Option<String>,
    channel: Option<String>,
    format: &str,
) -> anyhow::Result<()> {
    use ipg_switch::statement::Scope;
    let day = business_day(settings, date)?;
    let scope = match (institution, channel) {
        (Some(i), _) => Scope::Institution(i),
        (None, Some(c)) => Scope::Channel(c),
        (None, None) => bail!("--institution or --channel"),
    };
    if !matches!(format, "csv" | "json") {
        bail!("--format must be csv or json");
    }
    let s = day_statement(settings, &scope, &day).await?;
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
    use ipg_switch::statement::{read_bank_csv, Reconciliation, Scope};
    let day = business_day(settings, date)?;
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let bank = read_bank_csv(&data, &settings.reconcile)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let s = day_statement(settings, &Scope::Channel(channel.to_owned()), &day).await?;
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
    // A person at the CLI sees which systems a command talks to.
    if let Some(line) = talks_to(&settings, &cli.command) {
        eprintln!("{line}");
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
        Command::Contract { kind } => {
            if kind == "openapi" {
                println!("{}", ipg_switch::app::contract::openapi_json(&settings));
            } else {
                print!("{}", ipg_switch::app::contract::asyncapi_yaml(&settings));
            }
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
        Command::Restore {
            force,
            from_beginning,
        } => tokio::runtime::Runtime::new()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(restore(&settings, force, from_beginning))),
        Command::Snapshot { institution } => tokio::runtime::Runtime::new()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(snapshot(&settings, institution))),
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

/// The systems `cmd` uses, for a line on stderr: the Redis URL (password hidden) and the
/// brokers of the commands that use them, and which of the two it does not use. None for
/// `run` (it logs its connections) and `check-config` (it reaches neither).
fn talks_to(s: &Settings, cmd: &Command) -> Option<String> {
    let redis = format!("redis {}", ipg_switch::store::redacted(&s.redis.url));
    let kafka = format!("kafka {}", s.kafka.bootstrap_servers);
    Some(match cmd {
        Command::Run | Command::CheckConfig | Command::Contract { .. } => return None,
        // Journal readers: the journal alone, no Redis.
        Command::Statement { .. }
        | Command::Reconcile { .. }
        | Command::Webhook {
            command: WebhookCommand::Replay { .. },
        } => format!(
            "ipg-switch: {kafka}; no Redis (set IPG__KAFKA__BOOTSTRAP_SERVERS or --config to change)"
        ),
        Command::Passive { .. } => format!(
            "ipg-switch: {redis}; no broker: passive list reads Redis only (set IPG__REDIS__URL or --config to change)"
        ),
        Command::Bill { .. }
        | Command::Webhook { .. }
        | Command::Restore { .. }
        | Command::Snapshot { .. }
        | Command::Verify { .. } => format!(
            "ipg-switch: {redis}, {kafka} (set IPG__REDIS__URL / IPG__KAFKA__BOOTSTRAP_SERVERS or --config to change)"
        ),
    })
}

/// What to do when a topic does not exist yet: the daemon creates the switch's
/// topics (admin API) when it starts; the CLI never creates them.
const NO_TOPIC_REMEDY: &str = "the switch's topics are created by the daemon when it starts \
     (through the admin API): start `ipg-switch run` once with this configuration and brokers; \
     with the demo, run scripts/run-demo.sh and, in another shell, source .run/demo.env";

/// Whether `e` says that a topic does not exist (the broker has never seen the daemon):
/// from the journal's writer (`bill create`, `revoke`), its readers (`restore`, `verify`,
/// `statement`, `reconcile`, whose errors reach here as text) or `webhook replay`.
fn topic_missing(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let text = c.to_string();
        text.contains("topic")
            && (text.contains("does not exist") || text.contains("Unknown topic or partition"))
    })
}

/// An error and its causes, each said once (a Redis error repeats its I/O cause in its own
/// text); when Redis could not be reached, which Redis; when a topic does not exist, what
/// to do.
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
    if topic_missing(e) {
        out = format!("{out}; {NO_TOPIC_REMEDY}");
    }
    out
}
