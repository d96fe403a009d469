//! A gix progress sink that keeps only the two numbers we report: pack bytes and objects received.
//! gix increments shared atomic counters from its own threads; the caller polls them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gix::progress::{Count, Id, MessageLevel, NestedProgress, Progress, Step, StepShared, Unit};

/// gix-pack's ids for "bytes of the pack read" and "objects indexed" (bundle::write and index::write).
const READ_PACK_BYTES: Id = *b"BWRB";
const INDEX_OBJECTS: Id = *b"IWIO";

/// The counters a fetch fills in; clone to read them from another thread.
#[derive(Clone, Default)]
pub(crate) struct Counters {
    pub bytes: StepShared,
    pub objects: StepShared,
}

impl Counters {
    pub(crate) fn read(&self) -> (u64, u64) {
        (self.bytes.load(Ordering::Relaxed) as u64, self.objects.load(Ordering::Relaxed) as u64)
    }
}

/// One node of the progress tree gix builds; nodes we do not report count into private counters.
pub(crate) struct Tracker {
    id: Id,
    counter: StepShared,
    counters: Counters,
}

impl Tracker {
    pub(crate) fn new(counters: Counters) -> Tracker {
        Tracker { id: gix::progress::UNKNOWN, counter: Arc::new(AtomicUsize::new(0)), counters }
    }
}

impl Count for Tracker {
    fn set(&self, step: Step) {
        self.counter.store(step, Ordering::Relaxed);
    }

    fn step(&self) -> Step {
        self.counter.load(Ordering::Relaxed)
    }

    fn inc_by(&self, step: Step) {
        self.counter.fetch_add(step, Ordering::Relaxed);
    }

    fn counter(&self) -> StepShared {
        self.counter.clone()
    }
}

impl Progress for Tracker {
    fn init(&mut self, _max: Option<Step>, _unit: Option<Unit>) {}

    fn set_name(&mut self, _name: String) {}

    fn name(&self) -> Option<String> {
        None
    }

    fn id(&self) -> Id {
        self.id
    }

    fn message(&self, _level: MessageLevel, _message: String) {}
}

impl NestedProgress for Tracker {
    type SubProgress = Tracker;

    fn add_child(&mut self, name: impl Into<String>) -> Tracker {
        self.add_child_with_id(name, gix::progress::UNKNOWN)
    }

    fn add_child_with_id(&mut self, _name: impl Into<String>, id: Id) -> Tracker {
        let counter = match id {
            READ_PACK_BYTES => self.counters.bytes.clone(),
            INDEX_OBJECTS => self.counters.objects.clone(),
            _ => Arc::new(AtomicUsize::new(0)),
        };
        Tracker { id, counter, counters: self.counters.clone() }
    }
}
