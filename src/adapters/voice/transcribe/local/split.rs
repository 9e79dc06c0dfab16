//! Where to cut a long recording for Whisper. The model sees at most 30 s at a time; cutting at
//! fixed 30 s marks splits words, and the second half of a 60 s clip came back as "()". So each
//! chunk ends at the quietest 100 ms between 20 s and 28 s of its start, and a remainder of at
//! most 30 s is one chunk. Pure arithmetic on samples, so it is tested in every build.

use std::ops::Range;

/// The longest piece Whisper reads in one window.
pub const WINDOW_SECS: f64 = 30.0;

/// The cut is searched for in `[SEARCH_FROM_SECS, SEARCH_TO_SECS)` of each chunk: late enough
/// that chunks carry context, early enough to leave slack below the 30 s window.
pub const SEARCH_FROM_SECS: f64 = 20.0;
pub const SEARCH_TO_SECS: f64 = 28.0;

/// The span whose energy is compared; about a short pause between words.
pub const QUIET_SPAN_SECS: f64 = 0.1;

/// Candidate spans start every 10 ms.
const STEP_SECS: f64 = 0.01;

fn secs_to_samples(secs: f64, rate: u32) -> usize {
    (secs * f64::from(rate)).round() as usize
}

/// Consecutive ranges covering `samples` (at `rate` Hz), each at most 30 s long, cut at the
/// quietest 100 ms between 20 s and 28 s into the chunk. Empty input gives no ranges.
pub fn chunk_ranges(samples: &[f32], rate: u32) -> Vec<Range<usize>> {
    let window = secs_to_samples(WINDOW_SECS, rate).max(1);
    let from = secs_to_samples(SEARCH_FROM_SECS, rate);
    let to = secs_to_samples(SEARCH_TO_SECS, rate);
    let span = secs_to_samples(QUIET_SPAN_SECS, rate).max(1);
    let step = secs_to_samples(STEP_SECS, rate).max(1);

    let mut ranges = Vec::new();
    let mut start = 0;
    while samples.len() - start > window {
        let cut = start + quietest_span_middle(&samples[start..], from, to, span, step);
        ranges.push(start..cut);
        start = cut;
    }
    if start < samples.len() {
        ranges.push(start..samples.len());
    }
    ranges
}

/// The middle of the quietest `span` that starts in `[from, to - span]` of `samples` (which is
/// longer than `to`). Ties go to the earliest span.
fn quietest_span_middle(
    samples: &[f32],
    from: usize,
    to: usize,
    span: usize,
    step: usize,
) -> usize {
    let last_start = to.saturating_sub(span).max(from);
    let mut best = (f64::INFINITY, from);
    let mut at = from;
    while at <= last_start {
        let energy: f64 = samples[at..at + span]
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum();
        if energy < best.0 {
            best = (energy, at);
        }
        at += step;
    }
    best.1 + span / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 16_000;

    /// A deterministic "speech-like" signal: a loud tone with a varying envelope.
    fn loud(secs: f64) -> Vec<f32> {
        let n = secs_to_samples(secs, RATE);
        (0..n)
            .map(|i| {
                let t = i as f32 / RATE as f32;
                0.5 * (t * 440.0 * std::f32::consts::TAU).sin() * (0.6 + 0.4 * (t * 3.1).sin())
            })
            .collect()
    }

    fn at(secs: f64) -> usize {
        secs_to_samples(secs, RATE)
    }

    fn assert_covers(ranges: &[Range<usize>], len: usize, rate: u32) {
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(len));
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "contiguous: {ranges:?}");
        }
        for r in ranges {
            assert!(
                r.len() <= secs_to_samples(WINDOW_SECS, rate),
                "≤ 30 s: {ranges:?}"
            );
            assert!(!r.is_empty());
        }
    }

    #[test]
    fn short_clips_are_one_chunk() {
        assert!(chunk_ranges(&[], RATE).is_empty());
        let clip = loud(10.7);
        assert_eq!(chunk_ranges(&clip, RATE), vec![0..clip.len()]);
        let exact = loud(WINDOW_SECS);
        assert_eq!(chunk_ranges(&exact, RATE), vec![0..exact.len()]);
    }

    #[test]
    fn cuts_in_the_pause() {
        // 60 s of sound with a 300 ms pause at 23.4 s and another at 46.0 s.
        let mut clip = loud(60.0);
        for pause in [23.4, 46.0] {
            clip[at(pause)..at(pause + 0.3)].fill(0.0);
        }
        let ranges = chunk_ranges(&clip, RATE);
        assert_covers(&ranges, clip.len(), RATE);
        assert_eq!(ranges.len(), 3, "{ranges:?}");
        let first_cut = ranges[0].end;
        assert!(
            (at(23.4)..at(23.7)).contains(&first_cut),
            "cut at {} s",
            first_cut as f64 / f64::from(RATE)
        );
        let second_cut = ranges[1].end;
        assert!(
            (at(46.0)..at(46.3)).contains(&second_cut),
            "cut at {} s",
            second_cut as f64 / f64::from(RATE)
        );
    }

    #[test]
    fn without_pauses_still_cuts_between_20_and_28_s() {
        let clip = loud(75.0);
        let ranges = chunk_ranges(&clip, RATE);
        assert_covers(&ranges, clip.len(), RATE);
        assert!(ranges.len() >= 3);
        for r in &ranges[..ranges.len() - 1] {
            assert!(
                (at(SEARCH_FROM_SECS)..at(SEARCH_TO_SECS)).contains(&r.len()),
                "{ranges:?}"
            );
        }
    }

    #[test]
    fn a_pause_outside_the_search_span_is_ignored() {
        // Silence at 10 s and at 29 s lies outside [20, 28): the cut falls in the quieter of
        // the spans inside, here a dip at 21 s.
        let mut clip = loud(40.0);
        clip[at(10.0)..at(11.0)].fill(0.0);
        clip[at(28.5)..at(29.5)].fill(0.0);
        clip[at(21.0)..at(21.2)].iter_mut().for_each(|s| *s *= 0.01);
        let ranges = chunk_ranges(&clip, RATE);
        assert_covers(&ranges, clip.len(), RATE);
        assert!((at(21.0)..at(21.2)).contains(&ranges[0].end), "{ranges:?}");
    }

    #[test]
    fn other_rates() {
        let clip = vec![0.1_f32; 8_000 * 45];
        let ranges = chunk_ranges(&clip, 8_000);
        assert_covers(&ranges, clip.len(), 8_000);
        assert_eq!(ranges.len(), 2);
    }
}
