//! At most once: a session's record of the calls it ran and the answers it
//! gave, by the client's call number ([`crate::proto::Once`]), so that a
//! call the client sends again after a lost connection (its answer lost
//! on the way) gets the first answer instead of running twice.
//!
//! Both ends keep it small: the client says with every call below which
//! number it holds every answer ([`crate::proto::Once::acked_below`]), and
//! the server forgets those; a client that never says so is bounded by
//! [`MAX_KEPT_ANSWERS`], past which the oldest answers are forgotten and a
//! call sent again with such a number fails (`EIO`) rather than running a
//! second time.
//!
//! Pure: plain values; the server's transport waits for a call still
//! running ([`Begin::Running`]) and sends the answers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// An encoded answer frame, shared between the stream it is sent on and
/// the record without a copy (a read's answer can be a MiB).
pub type Answer = Arc<Vec<u8>>;

/// The most answers one session keeps for calls the client may send again.
pub const MAX_KEPT_ANSWERS: usize = 4096;

/// What to do with a numbered call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Run it (the first time it is seen).
    Run,
    /// The same call is running (sent again before its first run ended):
    /// wait for its answer.
    Running,
    /// It ran: send this answer (an encoded frame) again.
    Done(Answer),
    /// It may have run, and its answer is forgotten: fail it.
    Forgotten,
}

/// One session's numbered calls.
#[derive(Debug, Default)]
pub struct ReplyBook {
    running: HashSet<u64>,
    done: HashMap<u64, Answer>,
    /// The client holds every answer below this.
    acked_below: u64,
    /// Answers below this may have been dropped by the bound.
    forgotten_below: u64,
}

impl ReplyBook {
    /// Call `id` arrived; the client holds every answer below
    /// `acked_below`.
    pub fn begin(&mut self, id: u64, acked_below: u64) -> Begin {
        self.ack(acked_below);
        if let Some(answer) = self.done.get(&id) {
            return Begin::Done(answer.clone());
        }
        if self.running.contains(&id) {
            return Begin::Running;
        }
        if id < self.acked_below.max(self.forgotten_below) {
            return Begin::Forgotten;
        }
        self.running.insert(id);
        Begin::Run
    }

    /// Call `id` ran and was answered `answer`.
    pub fn finish(&mut self, id: u64, answer: Answer) {
        self.running.remove(&id);
        if id < self.acked_below {
            return;
        }
        self.done.insert(id, answer);
        while self.done.len() > MAX_KEPT_ANSWERS {
            let Some(&oldest) = self.done.keys().min() else {
                break;
            };
            self.done.remove(&oldest);
            self.forgotten_below = self.forgotten_below.max(oldest + 1);
        }
    }

    /// How many answers are kept.
    pub fn kept(&self) -> usize {
        self.done.len()
    }

    fn ack(&mut self, below: u64) {
        if below > self.acked_below {
            self.acked_below = below;
            self.done.retain(|id, _| *id >= below);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(byte: u8) -> Answer {
        Arc::new(vec![byte; 3])
    }

    #[test]
    fn a_call_sent_again_gets_its_first_answer() {
        let mut book = ReplyBook::default();
        assert_eq!(book.begin(1, 1), Begin::Run);
        assert_eq!(book.begin(1, 1), Begin::Running);
        book.finish(1, answer(7));
        assert_eq!(book.begin(1, 1), Begin::Done(answer(7)));
        // A new number runs.
        assert_eq!(book.begin(2, 1), Begin::Run);
    }

    #[test]
    fn answers_the_client_holds_are_forgotten() {
        let mut book = ReplyBook::default();
        for id in 1..=3 {
            assert_eq!(book.begin(id, 1), Begin::Run);
            book.finish(id, answer(1));
        }
        assert_eq!(book.kept(), 3);
        // The client holds 1 and 2; 3 is still in flight for it.
        assert_eq!(book.begin(4, 3), Begin::Run);
        assert_eq!(book.kept(), 1);
        assert_eq!(book.begin(3, 3), Begin::Done(answer(1)));
        // A number below what the client holds is never run again.
        assert_eq!(book.begin(2, 3), Begin::Forgotten);
        // Finishing a call the client already gave up keeps nothing.
        book.finish(4, answer(4));
        assert_eq!(book.begin(5, 5), Begin::Run);
        assert_eq!(book.kept(), 0);
    }

    #[test]
    fn a_client_that_never_acknowledges_is_bounded() {
        let mut book = ReplyBook::default();
        let n = u64::try_from(MAX_KEPT_ANSWERS).expect("fits") + 10;
        for id in 1..=n {
            assert_eq!(book.begin(id, 0), Begin::Run);
            book.finish(id, answer(0));
        }
        assert_eq!(book.kept(), MAX_KEPT_ANSWERS);
        // The oldest are gone: sent again, they fail rather than run.
        assert_eq!(book.begin(1, 0), Begin::Forgotten);
        assert_eq!(book.begin(10, 0), Begin::Forgotten);
        assert_eq!(book.begin(11, 0), Begin::Done(answer(0)));
        assert_eq!(book.begin(n + 1, 0), Begin::Run);
    }

    #[test]
    fn acknowledgements_never_go_back() {
        let mut book = ReplyBook::default();
        assert_eq!(book.begin(5, 5), Begin::Run);
        book.finish(5, answer(5));
        // A late call carrying an older acknowledgement changes nothing.
        assert_eq!(book.begin(6, 2), Begin::Run);
        assert_eq!(book.begin(5, 2), Begin::Done(answer(5)));
        assert_eq!(book.begin(4, 2), Begin::Forgotten);
    }
}
