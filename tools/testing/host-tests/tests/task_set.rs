// SPDX-License-Identifier: GPL-2.0

//! The task set rules: ordering by task attribute, queue depth refusals.

use scst_host_tests::scst_core::task_set::{Refusal, Slot, TaskAttr, TaskSet};
use TaskAttr::*;

fn set(n: usize) -> TaskSet<Vec<Slot>> {
    TaskSet::new(vec![Slot::FREE; n])
}

#[test]
fn simple_commands_start_at_once() {
    let mut ts = set(8);
    let a = ts.admit(Simple, 0, 8).unwrap();
    let b = ts.admit(Simple, 1, 8).unwrap();
    assert!(ts.may_start(a) && ts.may_start(b));
    assert_eq!(ts.len(), 2);
}

#[test]
fn ordered_waits_for_every_older_command_and_blocks_younger_simple() {
    let mut ts = set(8);
    let s1 = ts.admit(Simple, 0, 8).unwrap();
    let o = ts.admit(Ordered, 1, 8).unwrap();
    let s2 = ts.admit(Simple, 2, 8).unwrap();
    assert!(ts.may_start(s1));
    assert!(
        !ts.may_start(o),
        "ORDERED starts before an older SIMPLE ended"
    );
    assert!(
        !ts.may_start(s2),
        "SIMPLE starts before an older ORDERED ended"
    );
    assert!(ts.end(s1), "ending the SIMPLE must wake the ORDERED waiter");
    assert!(ts.may_start(o));
    assert!(!ts.may_start(s2));
    assert!(ts.end(o));
    assert!(ts.may_start(s2));
    assert!(!ts.end(s2), "nothing waits behind the last SIMPLE");
    assert!(ts.is_empty());
}

#[test]
fn head_of_queue_starts_at_once_and_holds_younger_simple() {
    let mut ts = set(8);
    let s_old = ts.admit(Simple, 0, 8).unwrap();
    let o = ts.admit(Ordered, 1, 8).unwrap();
    let h = ts.admit(HeadOfQueue, 2, 8).unwrap();
    let s_young = ts.admit(Simple, 3, 8).unwrap();
    assert!(ts.may_start(h), "HEAD OF QUEUE waits");
    assert!(ts.may_start(s_old));
    assert!(!ts.may_start(o));
    assert!(!ts.may_start(s_young));
    ts.end(s_old);
    assert!(ts.may_start(o) && !ts.may_start(s_young));
    ts.end(o);
    assert!(
        !ts.may_start(s_young),
        "SIMPLE passes an older HEAD OF QUEUE"
    );
    ts.end(h);
    assert!(ts.may_start(s_young));
}

#[test]
fn aca_is_ordered() {
    let mut ts = set(4);
    let s = ts.admit(Simple, 0, 4).unwrap();
    let a = ts.admit(Aca, 1, 4).unwrap();
    assert!(!ts.may_start(a));
    ts.end(s);
    assert!(ts.may_start(a));
}

#[test]
fn nexus_limit_gives_task_set_full_and_device_limit_busy() {
    let mut ts = set(3);
    let a = ts.admit(Simple, 0, 2).unwrap();
    ts.admit(Simple, 1, 2).unwrap();
    assert_eq!(ts.admit(Simple, 2, 2), Err(Refusal::TaskSetFull));
    // Another nexus with nothing queued fills the device ...
    ts.admit(Simple, 0, 2).unwrap();
    // ... so a third nexus with no commands gets BUSY, the first TASK SET FULL.
    assert_eq!(ts.admit(Simple, 0, 2), Err(Refusal::Busy));
    assert_eq!(ts.admit(Simple, 1, 5), Err(Refusal::TaskSetFull));
    ts.end(a);
    assert!(ts.admit(Simple, 0, 2).is_ok(), "a freed slot is reused");
    assert_eq!(ts.len(), 3);
}

#[test]
fn stale_or_double_end_changes_nothing() {
    let mut ts = set(2);
    let a = ts.admit(Ordered, 0, 2).unwrap();
    ts.end(a);
    let b = ts.admit(Simple, 0, 2).unwrap();
    assert!(!ts.end(a), "ending a ticket twice");
    assert_eq!(ts.len(), 1);
    assert!(ts.may_start(b));
    ts.end(b);
    assert!(ts.is_empty());
    // Every slot is usable again, in any order.
    let x = ts.admit(Simple, 0, 2).unwrap();
    let y = ts.admit(Simple, 1, 2).unwrap();
    assert!(ts.admit(Simple, 0, 9).is_err());
    ts.end(y);
    ts.end(x);
    assert!(ts.admit(Simple, 0, 2).is_ok() && ts.admit(Simple, 1, 2).is_ok());
}

#[test]
fn wire_attribute_codes() {
    assert_eq!(TaskAttr::from_wire(0), Some(Simple));
    assert_eq!(TaskAttr::from_wire(1), Some(Simple));
    assert_eq!(TaskAttr::from_wire(2), Some(Ordered));
    assert_eq!(TaskAttr::from_wire(3), Some(HeadOfQueue));
    assert_eq!(TaskAttr::from_wire(4), Some(Aca));
    assert_eq!(TaskAttr::from_wire(5), None);
}

#[test]
fn empty_storage_refuses() {
    let mut ts = set(0);
    assert_eq!(ts.admit(Simple, 0, 4), Err(Refusal::Busy));
}

#[test]
fn compare_and_write_runs_ordered() {
    use scst_host_tests::scst_core::task_set::TaskAttr;
    for attr in [TaskAttr::Simple, TaskAttr::HeadOfQueue, TaskAttr::Ordered] {
        assert_eq!(attr.for_opcode(0x89), TaskAttr::Ordered);
    }
    assert_eq!(TaskAttr::Simple.for_opcode(0x8b), TaskAttr::Ordered);
    assert_eq!(TaskAttr::Simple.for_opcode(0x2a), TaskAttr::Simple);
    assert_eq!(
        TaskAttr::HeadOfQueue.for_opcode(0x28),
        TaskAttr::HeadOfQueue
    );
}
