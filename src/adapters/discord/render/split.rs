//! The markdown-aware splitter: cuts text into Discord messages of at most 2000 characters
//! without ever breaking a code fence. A cut inside a fence closes it at the end of one chunk and
//! reopens it, with the same language, at the start of the next.
//!
//! Properties (tested): every chunk fits the limit; the chunks minus the fence lines the splitter
//! added concatenate back to the input; every chunk has balanced fences; language tags survive.

/// Discord's content limit, counted in `chars()` as serenity and Discord count it.
pub const DISCORD_LIMIT: usize = 2000;

/// What the splitter aims for: a little under the limit, so a chunk that later gains a closing
/// fence or a bullet still fits.
pub const TARGET_LIMIT: usize = 1990;

/// A preferred cut (before a heading, list item or blank line) is taken only if it keeps at
/// least this share of the chunk; otherwise chunks would get needlessly short.
const MIN_PREFERRED_FILL_PERCENT: usize = 50;

/// An open code fence: its marker character, length, and the exact line that opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fence {
    marker: char,
    len: usize,
    /// The opening line including its newline, e.g. "```rust\n".
    open_line: String,
}

impl Fence {
    fn close_text(&self) -> String {
        std::iter::repeat_n(self.marker, self.len).collect()
    }
}

/// One chunk and what the splitter added around the input text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The full chunk as it will be posted.
    pub text: String,
    /// Bytes at the start that the splitter added (a reopened fence).
    pub added_prefix: usize,
    /// Bytes at the end that the splitter added (a newline and a closing fence).
    pub added_suffix: usize,
}

impl Chunk {
    /// The part of the chunk that came from the input.
    pub fn original(&self) -> &str {
        &self.text[self.added_prefix..self.text.len() - self.added_suffix]
    }
}

/// Splits `text` into chunks of at most `limit` characters (see the module doc).
pub fn split_chunks(text: &str, limit: usize) -> Vec<Chunk> {
    let mut s = Splitter::new(limit.max(MIN_LIMIT));
    for line in text.split_inclusive('\n') {
        s.push_line(line);
    }
    s.finish()
}

/// The messages to post for `text`: chunks with trailing newlines trimmed and blank ones dropped.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    split_chunks(text, limit)
        .into_iter()
        .map(|c| c.text.trim_end().to_owned())
        .filter(|c| !c.trim().is_empty())
        .map(|c| safety_net(c, limit))
        .collect()
}

/// Below this, a reopened fence plus a closing one would not leave room for content.
const MIN_LIMIT: usize = 64;

/// Truncates anything that still exceeds the limit (it should never happen) and logs it.
fn safety_net(chunk: String, limit: usize) -> String {
    let n = chunk.chars().count();
    if n <= limit {
        return chunk;
    }
    tracing::warn!(
        chars = n,
        limit,
        "A split chunk exceeded the limit; truncated."
    );
    let mut out: String = chunk.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Parses a fence line: `(marker, len, info)` if the line opens or closes a fence.
fn fence_of(line: &str) -> Option<(char, usize, &str)> {
    let body = line.trim_end_matches(['\n', '\r']);
    let indent = body.len() - body.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &body[indent..];
    let marker = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = rest.chars().take_while(|c| *c == marker).count();
    if len < 3 {
        return None;
    }
    let info = &rest[len..];
    // A backtick fence's info string may not contain backticks (that is inline code).
    if marker == '`' && info.contains('`') {
        return None;
    }
    Some((marker, len, info.trim()))
}

/// Whether a cut right before this line reads naturally.
fn is_preferred_cut(line: &str) -> bool {
    let t = line.trim_start();
    if t.trim().is_empty() {
        return true;
    }
    if t.starts_with('#') {
        return true;
    }
    if t.starts_with("- ") || t.starts_with("* ") || t.starts_with("+ ") {
        return true;
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && t[digits..].starts_with(". ")
}

struct Splitter {
    limit: usize,
    out: Vec<Chunk>,
    /// The chunk being filled.
    cur: String,
    cur_chars: usize,
    /// Bytes at the start of `cur` that reopen a fence.
    cur_prefix: usize,
    /// The fence open at the end of `cur`.
    fence: Option<Fence>,
    /// A byte offset in `cur` where a preferred cut could go (always outside any fence).
    preferred: Option<usize>,
    /// The last appended line was a heading (outside a fence).
    last_was_heading: bool,
}

impl Splitter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            out: Vec::new(),
            cur: String::new(),
            cur_chars: 0,
            cur_prefix: 0,
            fence: None,
            preferred: None,
            last_was_heading: false,
        }
    }

    /// The fence state after `line`, given the state before it.
    fn fence_after(&self, line: &str) -> Option<Fence> {
        match (&self.fence, fence_of(line)) {
            (None, Some((marker, len, _))) => Some(Fence {
                marker,
                len,
                open_line: if line.ends_with('\n') {
                    line.to_owned()
                } else {
                    format!("{line}\n")
                },
            }),
            (Some(f), Some((marker, len, info)))
                if marker == f.marker && len >= f.len && info.is_empty() =>
            {
                None
            }
            (f, _) => f.clone(),
        }
    }

    /// Characters needed to close `fence` after text ending (or not) with a newline.
    fn close_cost(ends_with_newline: bool, fence: &Option<Fence>) -> usize {
        match fence {
            None => 0,
            Some(f) => f.len + usize::from(!ends_with_newline),
        }
    }

    fn fits(&self, line: &str, after: &Option<Fence>) -> bool {
        self.cur_chars + chars(line) + Self::close_cost(line.ends_with('\n'), after) <= self.limit
    }

    fn has_content(&self) -> bool {
        self.cur.len() > self.cur_prefix
    }

    fn push_line(&mut self, line: &str) {
        let after = self.fence_after(line);
        if self.fits(line, &after) {
            self.append(line, after);
            return;
        }
        if self.has_content() {
            // A line that is itself a good cut point starts the next chunk; otherwise look back
            // for one (so a paragraph is not cut mid-way when a heading or list item is near).
            let here_is_good = self.fence.is_none() && is_preferred_cut(line);
            if let Some(at) = self.preferred_cut().filter(|_| !here_is_good) {
                // The state at a preferred cut is "outside any fence": nothing to close or
                // reopen; the lines after it move to the next chunk.
                let tail = self.cur.split_off(at);
                self.fence = None;
                self.emit();
                for l in tail.split_inclusive('\n') {
                    self.push_line(l);
                }
                self.push_line(line);
                return;
            }
            self.emit();
            self.start_chunk();
            if self.fits(line, &after) {
                self.append(line, after);
                return;
            }
        }
        self.hard_split(line, after);
    }

    /// A preferred cut point that keeps the chunk at least half full.
    fn preferred_cut(&self) -> Option<usize> {
        let at = self.preferred.filter(|at| *at > self.cur_prefix)?;
        let kept = chars(&self.cur[..at]);
        (kept * 100 >= self.limit * MIN_PREFERRED_FILL_PERCENT).then_some(at)
    }

    fn append(&mut self, line: &str, after: Option<Fence>) {
        // Never right after a heading: it belongs with what follows it.
        if self.fence.is_none()
            && is_preferred_cut(line)
            && self.has_content()
            && !self.last_was_heading
        {
            self.preferred = Some(self.cur.len());
        }
        self.last_was_heading = self.fence.is_none() && line.trim_start().starts_with('#');
        self.cur.push_str(line);
        self.cur_chars += chars(line);
        self.fence = after;
    }

    /// Ends the current chunk, closing an open fence.
    fn emit(&mut self) {
        let mut suffix = String::new();
        if let Some(f) = &self.fence {
            if !self.cur.ends_with('\n') {
                suffix.push('\n');
            }
            suffix.push_str(&f.close_text());
        }
        let added_suffix = suffix.len();
        let mut text = std::mem::take(&mut self.cur);
        text.push_str(&suffix);
        if !text.is_empty() {
            self.out.push(Chunk {
                text,
                added_prefix: self.cur_prefix,
                added_suffix,
            });
        }
        self.cur_chars = 0;
        self.cur_prefix = 0;
        self.preferred = None;
    }

    /// Starts a chunk, reopening the fence that was open at the cut.
    fn start_chunk(&mut self) {
        if let Some(f) = &self.fence {
            self.cur.push_str(&f.open_line);
            self.cur_prefix = f.open_line.len();
            self.cur_chars = chars(&f.open_line);
        }
    }

    /// A line too long for any chunk: cut it at the last space (in code: at the room left).
    fn hard_split(&mut self, line: &str, after: Option<Fence>) {
        let mut rest = line;
        // Each round either finishes the line or moves at least one character out of it.
        while !rest.is_empty() {
            if self.fits(rest, &after) {
                self.append(rest, after);
                return;
            }
            let close_mid_line = Self::close_cost(false, &self.fence);
            let room = self
                .limit
                .saturating_sub(self.cur_chars + close_mid_line)
                .max(usize::from(!self.has_content()));
            if room == 0 {
                self.emit();
                self.start_chunk();
                continue;
            }
            if chars(rest) <= room {
                // The whole rest fits only without the fence it opens: start a fresh chunk so the
                // fence state stays right (an empty chunk takes it whole; the safety net guards).
                if self.has_content() {
                    self.emit();
                    self.start_chunk();
                    continue;
                }
                self.append(rest, after);
                return;
            }
            let byte_room = rest.char_indices().nth(room).map_or(rest.len(), |(i, _)| i);
            let mut cut = byte_room;
            if self.fence.is_none() {
                if let Some(space) = rest[..byte_room].rfind(' ').filter(|s| *s > 0) {
                    cut = space + 1;
                }
            }
            let (piece, tail) = rest.split_at(cut);
            self.cur.push_str(piece);
            self.cur_chars += chars(piece);
            self.preferred = None;
            rest = tail;
            self.emit();
            self.start_chunk();
        }
    }

    fn finish(mut self) -> Vec<Chunk> {
        if self.has_content() {
            // The input's own unclosed fence stays unclosed: the splitter only closes what it cut.
            let text = std::mem::take(&mut self.cur);
            self.out.push(Chunk {
                text,
                added_prefix: self.cur_prefix,
                added_suffix: 0,
            });
        }
        self.out
    }
}

/// Closes a fence left open at the end of `text` (streaming text, cut mid-block), for display.
pub fn close_open_fence(text: &str) -> String {
    let mut open: Option<(char, usize)> = None;
    for line in text.split_inclusive('\n') {
        match (open, fence_of(line)) {
            (None, Some((m, n, _))) => open = Some((m, n)),
            (Some((m, n)), Some((m2, n2, info))) if m == m2 && n2 >= n && info.is_empty() => {
                open = None
            }
            _ => {}
        }
    }
    match open {
        None => text.to_owned(),
        Some((m, n)) => {
            let mut out = text.to_owned();
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.extend(std::iter::repeat_n(m, n));
            out
        }
    }
}

/// Tables become aligned monospace code blocks (Discord renders no tables); headings deeper than
/// `###` are capped (Discord renders only three levels). Fenced code is left alone.
pub fn prepare_markdown(text: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<(char, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        match (fence, fence_of(line)) {
            (None, Some((m, n, _))) => {
                fence = Some((m, n));
                out.push_str(line);
                i += 1;
                continue;
            }
            (Some((m, n)), Some((m2, n2, info))) if m == m2 && n2 >= n && info.is_empty() => {
                fence = None;
                out.push_str(line);
                i += 1;
                continue;
            }
            (Some(_), _) => {
                out.push_str(line);
                i += 1;
                continue;
            }
            _ => {}
        }
        if let Some(consumed) = table_at(&lines[i..], &mut out) {
            i += consumed;
            continue;
        }
        out.push_str(&cap_heading(line));
        i += 1;
    }
    out
}

fn cap_heading(line: &str) -> String {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    if hashes > 3 && line[hashes..].starts_with(' ') {
        format!("###{}", &line[hashes..])
    } else {
        line.to_owned()
    }
}

fn table_cells(line: &str) -> Option<Vec<String>> {
    let t = line.trim();
    if !t.contains('|') {
        return None;
    }
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    Some(t.split('|').map(|c| c.trim().to_owned()).collect())
}

fn is_separator(line: &str) -> bool {
    table_cells(line).is_some_and(|cells| {
        !cells.is_empty()
            && cells.iter().all(|c| {
                let c = c.trim_matches(':');
                c.len() >= 3 && c.chars().all(|ch| ch == '-')
            })
    })
}

/// Renders a table starting at `lines[0]` into `out`; returns how many lines it used.
fn table_at(lines: &[&str], out: &mut String) -> Option<usize> {
    let header = table_cells(lines.first()?)?;
    if !lines.get(1).is_some_and(|l| is_separator(l)) {
        return None;
    }
    let mut rows = vec![header];
    let mut used = 2;
    while let Some(cells) = lines.get(used).and_then(|l| table_cells(l)) {
        rows.push(cells);
        used += 1;
    }
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(chars(c));
        }
    }
    let render_row = |row: &[String]| {
        let cells: Vec<String> = (0..cols)
            .map(|i| {
                let c = row.get(i).map_or("", String::as_str);
                format!("{c}{}", " ".repeat(widths[i] - chars(c)))
            })
            .collect();
        cells.join("  ").trim_end().to_owned()
    };
    out.push_str("```\n");
    out.push_str(&render_row(&rows[0]));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&rule.join("  "));
    out.push('\n');
    for row in &rows[1..] {
        out.push_str(&render_row(row));
        out.push('\n');
    }
    out.push_str("```\n");
    Some(used)
}
