//! `sealpost top`: a live terminal view of a running server over the
//! admin socket (`GET /top` once a second, `docs/operations.md`).
//!
//! The state and the keys are plain data ([`App`], [`App::on_key`]) and
//! the screen is drawn from them ([`App::draw`]), so both are tested
//! without a terminal; [`top`] is the loop that owns the terminal, the
//! socket and the clock.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use hyper::Method;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::{DefaultTerminal, Frame};

use super::admin::{socket, AdminOptions};
use super::{ExitStatus, GlobalOptions, EXIT_FAILURE, EXIT_OK};
use crate::admin::client::AdminClient;
use crate::admin::top::{TopDestination, TopSnapshot};

/// How often the view asks for a new snapshot.
pub const REFRESH: Duration = Duration::from_secs(1);

/// How the destinations are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    /// Most queued recipients first (the server's order).
    #[default]
    Queued,
    /// Most active connections first.
    Active,
    /// By name.
    Name,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Queued => Sort::Active,
            Sort::Active => Sort::Name,
            Sort::Name => Sort::Queued,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Sort::Queued => "queued",
            Sort::Active => "active",
            Sort::Name => "name",
        }
    }
}

/// A queue action on the selected destination's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Act {
    /// `hold`, `release` or `retry` (`POST /queue/actions/<action>`).
    pub action: &'static str,
    pub destination: String,
    /// The tenant filter in force narrows the action too.
    pub tenant: Option<String>,
}

impl Act {
    /// The filter body: the destination's recipient domain (an inbound
    /// destination `inbound:<domain>` is its managed domain's mail).
    pub fn body(&self) -> serde_json::Value {
        let domain = crate::delivery::Destination::of(&self.destination).domain();
        let mut body = serde_json::json!({ "domain": domain });
        if let Some(tenant) = &self.tenant {
            body["tenant"] = serde_json::Value::String(tenant.clone());
        }
        body
    }
}

/// What a key asks the loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Quit,
    /// Fetch a new snapshot now (the filter changed).
    Refresh,
    Act(Act),
}

/// The view's state.
#[derive(Debug, Default)]
pub struct App {
    pub snapshot: TopSnapshot,
    /// Messages per second received and delivered, between the last two
    /// snapshots.
    pub rate_in: f64,
    pub rate_out: f64,
    previous: Option<TopSnapshot>,
    pub sort: Sort,
    pub selected: usize,
    /// The tenant filter in force.
    pub tenant: Option<String>,
    /// The tenant filter being typed (after `/`).
    pub input: Option<String>,
    /// The last action's result or error.
    pub status: String,
}

impl App {
    pub fn new() -> App {
        App {
            status: "connecting...".to_string(),
            ..App::default()
        }
    }

    /// Takes a new snapshot; rates come from the one before.
    pub fn update(&mut self, snapshot: TopSnapshot) {
        if let Some(before) = self
            .previous
            .as_ref()
            .filter(|b| b.tenant == snapshot.tenant && snapshot.at_ms > b.at_ms)
        {
            let seconds = (snapshot.at_ms - before.at_ms) as f64 / 1000.0;
            self.rate_in = snapshot.received.saturating_sub(before.received) as f64 / seconds;
            self.rate_out = snapshot.delivered.saturating_sub(before.delivered) as f64 / seconds;
        } else if self.previous.is_some() {
            self.rate_in = 0.0;
            self.rate_out = 0.0;
        }
        self.previous = Some(snapshot.clone());
        self.snapshot = snapshot;
        self.selected = self
            .selected
            .min(self.snapshot.destinations.len().saturating_sub(1));
    }

    /// The destinations in the order shown.
    pub fn destinations(&self) -> Vec<&TopDestination> {
        let mut rows: Vec<&TopDestination> = self.snapshot.destinations.iter().collect();
        match self.sort {
            Sort::Queued => {}
            Sort::Active => rows.sort_by(|a, b| {
                b.active_connections
                    .cmp(&a.active_connections)
                    .then_with(|| b.queued.cmp(&a.queued))
            }),
            Sort::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        }
        rows
    }

    fn selected_destination(&self) -> Option<String> {
        self.destinations()
            .get(self.selected)
            .map(|d| d.name.clone())
    }

    /// Handles one key.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if let Some(input) = self.input.as_mut() {
            match key.code {
                KeyCode::Enter => {
                    let typed = input.trim().to_string();
                    self.tenant = (!typed.is_empty()).then_some(typed);
                    self.input = None;
                    self.selected = 0;
                    self.status = match &self.tenant {
                        Some(t) => format!("showing tenant {t}"),
                        None => "showing every tenant".to_string(),
                    };
                    return Some(Command::Refresh);
                }
                KeyCode::Esc => self.input = None,
                KeyCode::Backspace => {
                    input.pop();
                }
                KeyCode::Char(c) => input.push(c),
                _ => {}
            }
            return None;
        }
        let act = |app: &App, action: &'static str| {
            app.selected_destination().map(|destination| {
                Command::Act(Act {
                    action,
                    destination,
                    tenant: app.tenant.clone(),
                })
            })
        };
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Some(Command::Quit),
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                Some(Command::Quit)
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.selected = 0;
                None
            }
            KeyCode::Char('/') => {
                self.input = Some(self.tenant.clone().unwrap_or_default());
                None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                let last = self.snapshot.destinations.len().saturating_sub(1);
                self.selected = (self.selected + 1).min(last);
                None
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                None
            }
            KeyCode::Char('h') => act(self, "hold"),
            KeyCode::Char('u') => act(self, "release"),
            KeyCode::Char('r') => act(self, "retry"),
            _ => None,
        }
    }

    /// Draws the whole screen.
    pub fn draw(&self, frame: &mut Frame) {
        let [head, queue, middle, bottom, foot] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(6),
            Constraint::Length(9),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        let s = &self.snapshot;
        frame.render_widget(
            Paragraph::new(format!(
                "sealpost top  in {:.1} msg/s  out {:.1} msg/s  deferred {}  bounced {}  tenant: {}  sort: {}",
                self.rate_in,
                self.rate_out,
                s.deferred,
                s.bounced,
                self.tenant.as_deref().unwrap_or("all"),
                self.sort.as_str()
            ))
            .style(Style::default().add_modifier(Modifier::BOLD)),
            head,
        );
        let states: Vec<String> = s.queue.iter().map(|(st, n)| format!("{st} {n}")).collect();
        frame.render_widget(
            Paragraph::new(format!("queue: {}", states.join("  "))),
            queue,
        );

        let now_ms = s.at_ms;
        let rows: Vec<Row> = self
            .destinations()
            .into_iter()
            .map(|d| {
                let pause = match d.paused_until {
                    Some(until) if until > now_ms => {
                        format!("paused {}s", (until - now_ms).div_ceil(1000))
                    }
                    _ => "-".to_string(),
                };
                Row::new(vec![
                    Cell::from(d.name.clone()),
                    Cell::from(d.queued.to_string()),
                    Cell::from(d.active_connections.to_string()),
                    Cell::from(d.tls.clone().unwrap_or_else(|| "-".to_string())),
                    Cell::from(pause),
                    Cell::from(d.last_error.clone().unwrap_or_default()),
                ])
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Percentage(28),
                Constraint::Length(7),
                Constraint::Length(7),
                Constraint::Length(10),
                Constraint::Length(12),
                Constraint::Fill(1),
            ],
        )
        .header(
            Row::new([
                "DESTINATION",
                "QUEUED",
                "ACTIVE",
                "TLS",
                "PAUSE",
                "LAST ERROR",
            ])
            .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ")
        .block(Block::default().borders(Borders::TOP).title("destinations"));
        let mut selection = TableState::default().with_selected(Some(self.selected));
        frame.render_stateful_widget(table, middle, &mut selection);

        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(bottom);
        let tenants: Vec<Row> = s
            .tenants
            .iter()
            .map(|t| {
                Row::new(vec![
                    t.name.clone(),
                    t.queued_messages.to_string(),
                    t.received.to_string(),
                    t.delivered.to_string(),
                    t.deferred.to_string(),
                    t.bounced.to_string(),
                ])
            })
            .collect();
        frame.render_widget(
            Table::new(
                tenants,
                [
                    Constraint::Fill(1),
                    Constraint::Length(7),
                    Constraint::Length(6),
                    Constraint::Length(6),
                    Constraint::Length(6),
                    Constraint::Length(6),
                ],
            )
            .header(
                Row::new(["TENANT", "QUEUED", "RCVD", "DLVD", "DEFR", "BNCD"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(Block::default().borders(Borders::TOP).title("tenants")),
            left,
        );
        let reasons: Vec<Line> = s
            .defer_reasons
            .iter()
            .map(|r| Line::from(format!("{:>5}  {}", r.recipients, r.reason)))
            .chain(
                s.deferral_kinds
                    .iter()
                    .take(3)
                    .map(|k| Line::from(format!("{:>5}  ({})", k.recipients, k.reason))),
            )
            .collect();
        frame.render_widget(
            Paragraph::new(reasons).block(
                Block::default()
                    .borders(Borders::TOP)
                    .title("top defer reasons"),
            ),
            right,
        );
        let footer = match &self.input {
            Some(typed) => format!("tenant filter (Enter applies, empty for all): {typed}_"),
            None => format!(
                "q quit  s sort  / tenant  j/k select  h hold  u release  r retry  | {}",
                self.status
            ),
        };
        frame.render_widget(Paragraph::new(footer), foot);
    }
}

/// `sealpost top`: runs until `q`.
pub fn top(
    global: &GlobalOptions,
    options: &AdminOptions,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let Some(socket) = socket(global, options, err)? else {
        return Ok(EXIT_FAILURE);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = AdminClient::new(socket, Duration::from_secs(5));
    // Fail before taking over the terminal when nothing answers.
    if let Err(e) = runtime.block_on(client.request(Method::GET, "/top", None)) {
        writeln!(err, "sealpost top: {e}")?;
        return Ok(EXIT_FAILURE);
    }
    // Raw mode and the alternate screen, given back by `restore` (and by
    // ratatui's panic hook).
    let mut terminal = match ratatui::try_init() {
        Ok(terminal) => terminal,
        Err(e) => {
            writeln!(err, "sealpost top needs a terminal: {e}")?;
            return Ok(EXIT_FAILURE);
        }
    };
    let result = run(&mut terminal, &runtime, &client);
    ratatui::restore();
    match result {
        Ok(()) => Ok(EXIT_OK),
        Err(e) => {
            writeln!(err, "sealpost top: {e}")?;
            Ok(EXIT_FAILURE)
        }
    }
}

fn run(
    terminal: &mut DefaultTerminal,
    runtime: &tokio::runtime::Runtime,
    client: &AdminClient,
) -> io::Result<()> {
    let mut app = App::new();
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            fetch(&mut app, runtime, client);
            next = Instant::now() + REFRESH;
        }
        terminal.draw(|frame| app.draw(frame))?;
        let wait = next.saturating_duration_since(Instant::now());
        if !event::poll(wait)? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            continue;
        };
        match app.on_key(key) {
            Some(Command::Quit) => break,
            Some(Command::Refresh) => next = Instant::now(),
            Some(Command::Act(act)) => {
                app.status = perform(runtime, client, &act);
                next = Instant::now();
            }
            None => {}
        }
    }
    Ok(())
}

fn fetch(app: &mut App, runtime: &tokio::runtime::Runtime, client: &AdminClient) {
    let path = match &app.tenant {
        Some(t) => format!("/top?tenant={}", crate::admin::http::percent_encode(t)),
        None => "/top".to_string(),
    };
    match runtime.block_on(client.request(Method::GET, &path, None)) {
        Ok(answer) if answer.is_success() => {
            match serde_json::from_slice::<TopSnapshot>(&answer.body) {
                Ok(snapshot) => {
                    if app.status == "connecting..." {
                        app.status.clear();
                    }
                    app.update(snapshot);
                }
                Err(e) => app.status = format!("unreadable answer: {e}"),
            }
        }
        Ok(answer) => app.status = answer.error_text(),
        Err(e) => app.status = e.to_string(),
    }
}

/// Runs a queue action; the line to show.
fn perform(runtime: &tokio::runtime::Runtime, client: &AdminClient, act: &Act) -> String {
    let path = format!("/queue/actions/{}", act.action);
    let body = act.body().to_string().into_bytes();
    match runtime.block_on(client.request(Method::POST, &path, Some(body))) {
        Ok(answer) if answer.is_success() => {
            let touched = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v["touched"].as_u64())
                .unwrap_or(0);
            format!("{} {}: {touched} messages", act.action, act.destination)
        }
        Ok(answer) => format!(
            "{} {}: {}",
            act.action,
            act.destination,
            answer.error_text()
        ),
        Err(e) => format!("{} {}: {e}", act.action, act.destination),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::top::TopTenant;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn snapshot(at_ms: u64, received: u64) -> TopSnapshot {
        TopSnapshot {
            at_ms,
            received,
            delivered: received / 2,
            queue: vec![("queued".into(), 3), ("deferred".into(), 7)],
            destinations: vec![
                TopDestination {
                    name: "big.example".into(),
                    queued: 9,
                    active_connections: 1,
                    tls: Some("DANE".into()),
                    paused_until: None,
                    last_error: None,
                },
                TopDestination {
                    name: "a.example".into(),
                    queued: 1,
                    active_connections: 4,
                    tls: Some("cleartext".into()),
                    paused_until: Some(at_ms + 30_000),
                    last_error: Some("421 try later".into()),
                },
            ],
            tenants: vec![TopTenant {
                name: "acme".into(),
                queued_messages: 3,
                received,
                ..TopTenant::default()
            }],
            ..TopSnapshot::default()
        }
    }

    fn screen(app: &App) -> String {
        let mut terminal = Terminal::new(TestBackend::new(110, 24)).expect("terminal");
        terminal.draw(|f| app.draw(f)).expect("draw");
        let buffer = terminal.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn rates_come_from_two_snapshots() {
        let mut app = App::new();
        app.update(snapshot(10_000, 100));
        app.update(snapshot(12_000, 120));
        assert_eq!(app.rate_in, 10.0);
        assert_eq!(app.rate_out, 5.0);
        let text = screen(&app);
        assert!(text.contains("in 10.0 msg/s  out 5.0 msg/s"), "{text}");
        assert!(text.contains("queue: queued 3  deferred 7"), "{text}");
        assert!(text.contains("DANE"), "{text}");
        assert!(text.contains("paused 30s"), "{text}");
        assert!(text.contains("421 try later"), "{text}");
    }

    #[test]
    fn keys_sort_select_filter_and_act() {
        let mut app = App::new();
        app.update(snapshot(1_000, 10));
        assert_eq!(app.destinations()[0].name, "big.example");
        assert_eq!(app.on_key(key('s')), None);
        assert_eq!(app.destinations()[0].name, "a.example");
        assert_eq!(
            app.on_key(key('h')),
            Some(Command::Act(Act {
                action: "hold",
                destination: "a.example".into(),
                tenant: None
            }))
        );
        app.on_key(key('j'));
        assert_eq!(app.selected, 1);
        assert_eq!(app.on_key(key('/')), None);
        for c in "acme".chars() {
            assert_eq!(app.on_key(key(c)), None);
        }
        assert!(screen(&app).contains("tenant filter (Enter applies, empty for all): acme_"));
        assert_eq!(
            app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
            Some(Command::Refresh)
        );
        assert_eq!(app.tenant.as_deref(), Some("acme"));
        let Some(Command::Act(act)) = app.on_key(key('r')) else {
            panic!("retry");
        };
        assert_eq!(
            act.body(),
            serde_json::json!({"domain": "a.example", "tenant": "acme"})
        );
        let inbound = Act {
            action: "release",
            destination: "inbound:acme.example".into(),
            tenant: None,
        };
        assert_eq!(
            inbound.body(),
            serde_json::json!({"domain": "acme.example"})
        );
        assert_eq!(app.on_key(key('q')), Some(Command::Quit));
    }
}
