//! Message faults the coordinator can inject: drop, duplicate, delay or reorder chosen events,
//! in either direction, a bounded number of times or on every n-th match.

use std::time::Duration;

use serde_json::Value;

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Agent → coordinator.
    Inbound,
    /// Coordinator → agent.
    Outbound,
}

/// What happens to a matching message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    Drop,
    Duplicate,
    Delay(Duration),
    /// Held back and delivered right after the next message with the same event name.
    Reorder,
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Fault {
    pub direction: Direction,
    pub event: String,
    pub action: FaultAction,
    /// How many more times it fires; `None` = always.
    pub remaining: Option<u32>,
    /// Fires on every n-th match (1 = every match).
    pub every: u32,
    seen: u32,
}

impl Fault {
    pub fn new(direction: Direction, event: &str, action: FaultAction) -> Self {
        Self {
            direction,
            event: event.to_owned(),
            action,
            remaining: None,
            every: 1,
            seen: 0,
        }
    }

    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }

    pub fn every(mut self, n: u32) -> Self {
        self.every = n.max(1);
        self
    }
}

/// The active rules plus messages held for reordering.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<Fault>,
    held: Vec<(Direction, String, Value)>,
    /// How many times a rule fired, for assertions.
    pub fired: u64,
}

/// What to do with one message.
#[derive(Debug)]
pub enum Verdict {
    Deliver(Vec<(String, Value)>),
    DeliverLater(Duration, String, Value),
}

impl Faults {
    pub fn add(&mut self, fault: Fault) {
        self.rules.push(fault);
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// Applies the first matching rule to a message.
    pub fn apply(&mut self, direction: Direction, event: &str, body: Value) -> Verdict {
        let mut action = None;
        for rule in self
            .rules
            .iter_mut()
            .filter(|r| r.direction == direction && r.event == event)
        {
            if rule.remaining == Some(0) {
                continue;
            }
            rule.seen += 1;
            if rule.seen % rule.every != 0 {
                continue;
            }
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
            action = Some(rule.action);
            break;
        }
        if action.is_some() {
            self.fired += 1;
        }
        let mut deliver = match action {
            None => vec![(event.to_owned(), body)],
            Some(FaultAction::Drop) => Vec::new(),
            Some(FaultAction::Duplicate) => {
                vec![(event.to_owned(), body.clone()), (event.to_owned(), body)]
            }
            Some(FaultAction::Delay(d)) => return Verdict::DeliverLater(d, event.to_owned(), body),
            Some(FaultAction::Reorder) => {
                self.held.push((direction, event.to_owned(), body));
                return Verdict::Deliver(Vec::new());
            }
        };
        if !deliver.is_empty() {
            // Messages held for reordering go right after this one.
            let mut rest = Vec::new();
            self.held.retain(|(d, e, b)| {
                if *d == direction && e == event {
                    rest.push((e.clone(), b.clone()));
                    false
                } else {
                    true
                }
            });
            deliver.extend(rest);
        }
        Verdict::Deliver(deliver)
    }
}
