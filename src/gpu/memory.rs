//! Where each value of a plan lives on the device: the input buffer, the logits buffer, or an
//! activation buffer ("slot") reused by liveness. Pure bookkeeping, no device: unit-tested here.

use crate::error::{Error, Result};
use crate::plan::{Op, OpKind, Plan, ValueId};

/// Where a value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    /// The input buffer.
    Input,
    /// A pooled activation buffer (slot index).
    Slot(usize),
    /// The logits buffer.
    Logits,
}

/// Activation buffers reused by liveness: a value takes the best-fitting free slot (growing the
/// largest free one when none fits) and gives it back once its last reader has run.
#[derive(Default, Debug)]
pub struct SlotPlanner {
    /// Bytes of each slot.
    pub sizes: Vec<u64>,
    free: Vec<usize>,
    refs: Vec<usize>,
}

impl SlotPlanner {
    /// A slot of at least `bytes` for a new value (one reference).
    pub fn take(&mut self, bytes: u64) -> usize {
        let best_fit = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, &s)| self.sizes[s] >= bytes)
            .min_by_key(|(_, &s)| self.sizes[s])
            .map(|(i, _)| i);
        let largest_free = || {
            self.free
                .iter()
                .enumerate()
                .max_by_key(|(_, &s)| self.sizes[s])
                .map(|(i, _)| i)
        };
        let slot = if let Some(i) = best_fit {
            self.free.swap_remove(i)
        } else if let Some(i) = largest_free() {
            let s = self.free.swap_remove(i);
            self.sizes[s] = bytes;
            s
        } else {
            self.sizes.push(bytes);
            self.refs.push(0);
            self.sizes.len() - 1
        };
        self.refs[slot] = 1;
        slot
    }

    /// One more value lives in `slot` (an alias).
    pub fn retain(&mut self, slot: usize) {
        self.refs[slot] += 1;
    }

    /// One value of `slot` is dead; the slot is free once none is left.
    pub fn release(&mut self, slot: usize) {
        self.refs[slot] -= 1;
        if self.refs[slot] == 0 {
            self.free.push(slot);
        }
    }

    /// Bytes of the slots in use now.
    pub fn live_bytes(&self) -> u64 {
        self.sizes
            .iter()
            .zip(&self.refs)
            .filter(|(_, &r)| r > 0)
            .map(|(s, _)| *s)
            .sum()
    }
}

/// Every value's place, the slots' sizes and the peak of live activation bytes.
#[derive(Debug)]
pub struct MemoryPlan {
    /// Where each value lives (an SE output lives where its input does: the gate is applied
    /// by the next convolution's reads).
    pub loc: Vec<Loc>,
    /// Bytes of each activation buffer.
    pub slot_sizes: Vec<u64>,
    /// The most bytes of activation buffers live at once.
    pub peak_bytes: u64,
}

/// Whether a value is stored as f32 whatever the precision (pooled features and logits).
pub fn stored_as_f32(ops: &[Op], v: ValueId) -> bool {
    ops.iter()
        .any(|o| o.output == v && matches!(o.kind, OpKind::GlobalAvgPool | OpKind::Linear(_)))
}

/// The values op `i` reads or writes that no later op reads (`last_use` from
/// [`Plan::last_use`]), each once.
fn dead_after(plan: &Plan, i: usize, last_use: &[Option<usize>]) -> Vec<ValueId> {
    let op = &plan.ops[i];
    let mut touched: Vec<ValueId> = op.reads();
    touched.push(op.output);
    touched.sort_unstable();
    touched.dedup();
    touched.retain(|&v| last_use[v].is_none_or(|l| l <= i));
    touched
}

/// Places every value of `plan` for `batch` images of `elem_bytes` each, keeping the values in
/// `keep` (taps) alive to the end; `max_buffer` bytes at most per value.
pub fn plan_memory(
    plan: &Plan,
    batch: u64,
    elem_bytes: u64,
    keep: &[ValueId],
    max_buffer: u64,
) -> Result<MemoryPlan> {
    let last_use = plan.last_use();
    let mut slots = SlotPlanner::default();
    let mut loc: Vec<Option<Loc>> = vec![None; plan.values.len()];
    loc[0] = Some(Loc::Input);
    let mut peak = 0u64;
    for (i, op) in plan.ops.iter().enumerate() {
        let out = op.output;
        let input = loc[op.input].ok_or_else(|| {
            Error::InvalidPlan(format!("op `{}` reads a value not yet computed", op.name))
        })?;
        if let OpKind::SqueezeExcite(_) = op.kind {
            if keep.contains(&out) {
                return Err(Error::InvalidPlan(format!(
                    "a tap on squeeze-and-excitation output `{}` (its gate is applied by the next convolution)",
                    op.name
                )));
            }
            loc[out] = Some(input);
            if let Loc::Slot(s) = input {
                slots.retain(s);
            }
        } else {
            let elem = if stored_as_f32(&plan.ops, out) {
                4
            } else {
                elem_bytes
            };
            let bytes = batch * plan.values[out].numel() as u64 * elem;
            if bytes > max_buffer {
                return Err(Error::binding_limit(
                    format!("the output of `{}` ({bytes} bytes)", op.name),
                    max_buffer,
                    bytes,
                    "; use a smaller batch or input",
                ));
            }
            loc[out] = Some(if out == plan.output {
                Loc::Logits
            } else {
                Loc::Slot(slots.take(bytes))
            });
        }
        peak = peak.max(slots.live_bytes());
        for v in dead_after(plan, i, &last_use) {
            if !keep.contains(&v) && v != plan.output {
                if let Some(Loc::Slot(s)) = loc[v] {
                    slots.release(s);
                }
            }
        }
    }
    Ok(MemoryPlan {
        loc: loc.into_iter().map(|l| l.unwrap_or(Loc::Input)).collect(),
        slot_sizes: slots.sizes,
        peak_bytes: peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    #[test]
    fn slots_are_reused_best_fit_first() {
        let mut s = SlotPlanner::default();
        let a = s.take(100);
        let b = s.take(50);
        s.release(a);
        s.release(b);
        // 40 bytes fit both free slots: the smaller one is taken.
        assert_eq!(s.take(40), b);
        // 300 fits none: the largest free slot grows.
        assert_eq!(s.take(300), a);
        assert_eq!(s.sizes, [300, 50]);
        assert_eq!(s.live_bytes(), 350);
        // An alias keeps a slot taken until both values are dead.
        s.retain(b);
        s.release(b);
        assert_eq!(s.take(10), 2);
        s.release(b);
        assert_eq!(s.take(10), b);
    }

    #[test]
    fn a_zoo_model_needs_three_slots_and_taps_stay_alive() {
        let plan = Plan::new(zoo::get("regnet_y_400mf").unwrap(), 224, 224).unwrap();
        let m = plan_memory(&plan, 1, 4, &[], u64::MAX).unwrap();
        // x, the block's branch and the shortcut/projection are live at once.
        assert!(m.slot_sizes.len() <= 4, "{:?}", m.slot_sizes);
        assert_eq!(m.loc[plan.output], Loc::Logits);
        let stem = plan.tap("stem").unwrap();
        let kept = plan_memory(&plan, 1, 4, &[stem], u64::MAX).unwrap();
        let Loc::Slot(s) = kept.loc[stem] else {
            panic!("stem not in a slot")
        };
        // Nothing computed after the stem shares its slot.
        for (v, l) in kept.loc.iter().enumerate() {
            if v > stem {
                assert_ne!(*l, Loc::Slot(s), "value {v} overwrites the tapped stem");
            }
        }
        assert!(kept.peak_bytes >= m.peak_bytes);
    }

    #[test]
    fn values_over_the_buffer_limit_are_named() {
        let plan = Plan::new(zoo::get("regnet_x_200mf").unwrap(), 224, 224).unwrap();
        let e = plan_memory(&plan, 1, 4, &[], 1 << 20).unwrap_err();
        assert!(
            matches!(e, Error::DeviceLimit { needed, .. } if needed == 32 * 112 * 112 * 4),
            "{e}"
        );
        // 1 MiB holds every value of a 32x32 input.
        plan_memory(
            &Plan::new(zoo::get("regnet_x_200mf").unwrap(), 32, 32).unwrap(),
            1,
            4,
            &[],
            1 << 20,
        )
        .unwrap();
    }
}
