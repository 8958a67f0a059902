//! The non-blocking writer of log lines: a request thread appends its line to a
//! shared buffer and goes on; a thread of its own writes the buffer out a few
//! milliseconds after its first line, many lines in one write (tracing-appender's
//! writer wakes its thread for nearly every line at this service's rates).

use std::{
    io::Write,
    sync::{Arc, Condvar, Mutex, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

/// How long the first line in the buffer waits for others before they are written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// A buffer this full is written out at once, without waiting for the interval.
const HIGH_WATER: usize = 256 * 1024;
/// Lines beyond this many buffered bytes are dropped (and counted) rather than
/// requests held up while the output is stuck.
const MAX_BUFFERED: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    dropped: u64,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only bytes behind: keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands out writers that append to the shared buffer (the subscriber's
/// `MakeWriter`).
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Writes out what is still buffered when dropped, and stops the thread.
pub struct LogWriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread that writes the buffered lines to `out`.
///
/// # Errors
/// When the thread cannot be started.
pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<(LogWriter, LogWriterGuard)> {
    let shared = Arc::new(Shared::default());
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn({
            let shared = shared.clone();
            move || write_out(&shared, out)
        })?;
    Ok((
        LogWriter {
            shared: shared.clone(),
        },
        LogWriterGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_out<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    loop {
        // Asleep while there is nothing to write: an idle server makes no wake-ups.
        let state = shared
            .wake
            .wait_while(shared.state(), |s| {
                !s.closed && s.lines.is_empty() && s.dropped == 0
            })
            .unwrap_or_else(PoisonError::into_inner);
        // Then the lines of the next few milliseconds join the first in one write.
        let (closed, dropped) = {
            let (mut state, _) = shared
                .wake
                .wait_timeout_while(state, FLUSH_INTERVAL, |s| {
                    !s.closed && s.lines.len() < HIGH_WATER
                })
                .unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut state.lines, &mut spare);
            (state.closed, std::mem::take(&mut state.dropped))
        };
        // Nowhere to report a failed log write but the log itself: drop it.
        if !spare.is_empty() {
            let _ = out.write_all(&spare);
            spare.clear();
        }
        if dropped > 0 {
            let _ = writeln!(
                out,
                "{dropped} log lines were dropped: the log output could not keep up"
            );
        }
        let _ = out.flush();
        if closed {
            return;
        }
    }
}

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = &'a Self;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Write for &LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.state();
        if state.closed || state.lines.len() + line.len() > MAX_BUFFERED {
            state.dropped += 1;
        } else {
            let first = state.lines.is_empty();
            state.lines.extend_from_slice(line);
            // The first line wakes the thread; a full buffer cuts its wait short.
            if first || state.lines.len() >= HIGH_WATER {
                self.shared.wake.notify_one();
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_is_dropped() {
        let out = Captured::default();
        let (writer, guard) = start(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        let line = format!("thread {t} line {i}\n");
                        (&writer).write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 4000);
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..1000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected);
        }
    }

    /// An output whose first write waits until the test opens it.
    struct Gated {
        out: Captured,
        entered: std::sync::mpsc::Sender<()>,
        open: std::sync::mpsc::Receiver<()>,
        waited: bool,
    }

    impl Write for Gated {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if !self.waited {
                self.waited = true;
                self.entered.send(()).unwrap();
                self.open.recv().unwrap();
            }
            self.out.write(bytes)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_beyond_the_bound_are_dropped_and_counted_while_the_output_is_stuck() {
        let out = Captured::default();
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (open, open_rx) = std::sync::mpsc::channel();
        let gated = Gated {
            out: out.clone(),
            entered: entered_tx,
            open: open_rx,
            waited: false,
        };
        let (writer, guard) = start(gated).unwrap();
        (&writer).write_all(b"first\n").unwrap();
        // The thread is now stuck writing the first line out.
        entered.recv().unwrap();
        let mut line = vec![b'x'; 1024 * 1024 - 1];
        line.push(b'\n');
        for _ in 0..20 {
            (&writer).write_all(&line).unwrap();
        }
        open.send(()).unwrap();
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let kept = MAX_BUFFERED / line.len();
        assert!(text.starts_with("first\n"));
        assert_eq!(text.lines().filter(|l| l.starts_with('x')).count(), kept);
        assert!(text.ends_with(&format!(
            "{} log lines were dropped: the log output could not keep up\n",
            20 - kept
        )));
    }
}
