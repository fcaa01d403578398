//! The compiler from resolved rules to a classic BPF program for `seccomp(2)`.
//!
//! Layout: load the architecture and jump to that architecture's block (an architecture the
//! filter does not cover kills the process). A block loads the system call number and walks
//! a binary search tree over number ranges; each range ends in a `ret` (ranges of calls
//! with one unconditional action, and the gaps between them, which get the default action)
//! or in a jump to the call's rule chain. A chain tests its rules in order, each rule's
//! argument checks as 64-bit comparisons of two 32-bit halves, and returns the first
//! matching rule's action, else the default. Numbers above the highest one any rule names
//! answer `ENOSYS` (unless the default allows), so that libc falls back from calls newer
//! than the profile. On x86_64 the x32 calls (number bit 30) go to the x32 block.
//!
//! The tree and the range checks only load the number and the architecture and jump on
//! constants, so the kernel can tell which calls are always allowed and cache that.

use std::collections::BTreeMap;

use super::Arch;
use super::profile::{Action, ArgCheck, Op, Rule};

/// `offsetof(struct seccomp_data, nr)`.
const DATA_NR: u32 = 0;
/// `offsetof(struct seccomp_data, arch)`.
const DATA_ARCH: u32 = 4;
/// `offsetof(struct seccomp_data, args)`.
const DATA_ARGS: u32 = 16;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_AND_K: u16 = 0x54;
const BPF_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGT_K: u16 = 0x25;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

/// x32 system call numbers carry this bit.
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The `SECCOMP_RET_*` value of an action.
pub(super) fn ret_value(a: Action) -> u32 {
    match a {
        Action::KillProcess => 0x8000_0000,
        Action::KillThread => 0,
        Action::Trap => 0x0003_0000,
        Action::Errno(e) => 0x0005_0000 | u32::from(e),
        Action::Trace(v) => 0x7ff0_0000 | u32::from(v),
        Action::Log => 0x7ffc_0000,
        Action::Notify => libc::SECCOMP_RET_USER_NOTIF,
        Action::Allow => 0x7fff_0000,
    }
}

/// Errors of compiling a filter; each names the architecture.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The program is longer than the kernel accepts.
    #[error(
        "the seccomp filter for {arches} needs {len} instructions, more than the kernel's {MAX_INSNS}"
    )]
    TooLong {
        /// The architectures covered.
        arches: String,
        /// The program's length.
        len: usize,
    },
    /// A jump does not reach its target (a conditional jump reaches 255 instructions).
    #[error("a jump of the seccomp filter for {arches} does not reach its target")]
    JumpOutOfRange {
        /// The architectures covered.
        arches: String,
    },
    /// A rule has more argument checks than a filter can jump over.
    #[error(
        "a rule for system call {syscall} on {arch} has more than {MAX_CHECKS} argument checks"
    )]
    ChainTooLong {
        /// The system call.
        syscall: String,
        /// The architecture.
        arch: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Next,
    Label(usize),
}

#[derive(Debug, Clone, Copy)]
enum Insn {
    Load(u32),
    And(u32),
    Jump {
        code: u16,
        k: u32,
        jt: Target,
        jf: Target,
    },
    Always(usize),
    Ret(u32),
    Bind(usize),
}

/// Instructions with symbolic jump targets.
#[derive(Debug, Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    fn push(&mut self, i: Insn) {
        self.insns.push(i);
    }
    fn bind(&mut self, l: usize) {
        self.insns.push(Insn::Bind(l));
    }
    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.push(Insn::Jump { code, k, jt, jf });
    }
    /// Jumps to `l` when `A >= k` (any distance); falls through otherwise.
    fn jge_far(&mut self, k: u32, l: usize) {
        self.far(BPF_JGE_K, k, l);
    }
    /// Jumps to `l` when `A == k` (any distance); falls through otherwise.
    fn jeq_far(&mut self, k: u32, l: usize) {
        self.far(BPF_JEQ_K, k, l);
    }
    /// A conditional jump reaches 255 instructions: when the condition holds, take the next
    /// instruction, an unconditional jump (which reaches anywhere); else skip it.
    fn far(&mut self, code: u16, k: u32, l: usize) {
        let skip = self.label();
        self.jump(code, k, Target::Next, Target::Label(skip));
        self.push(Insn::Always(l));
        self.bind(skip);
    }

    /// Resolves the labels. `None` when a conditional jump does not reach (more than 255
    /// instructions ahead); the compiler only emits those inside rule chains.
    fn assemble(&self) -> Option<Vec<libc::sock_filter>> {
        let mut at = vec![usize::MAX; self.labels];
        let mut pc = 0;
        for i in &self.insns {
            match i {
                Insn::Bind(l) => at[*l] = pc,
                _ => pc += 1,
            }
        }
        let mut out = Vec::with_capacity(pc);
        for i in &self.insns {
            let pc = out.len();
            let rel = |t: Target| -> Option<u8> {
                match t {
                    Target::Next => Some(0),
                    Target::Label(l) => u8::try_from(at[l].checked_sub(pc + 1)?).ok(),
                }
            };
            let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
            out.push(match *i {
                Insn::Bind(_) => continue,
                Insn::Load(off) => f(BPF_LD_W_ABS, 0, 0, off),
                Insn::And(k) => f(BPF_ALU_AND_K, 0, 0, k),
                Insn::Ret(k) => f(BPF_RET_K, 0, 0, k),
                Insn::Always(l) => f(
                    BPF_JA,
                    0,
                    0,
                    u32::try_from(at[l].checked_sub(pc + 1)?).ok()?,
                ),
                Insn::Jump { code, k, jt, jf } => f(code, rel(jt)?, rel(jf)?, k),
            });
        }
        Some(out)
    }
}

/// What a range of system call numbers leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Ret(u32),
    Chain(usize),
}

/// One architecture's rules: number -> the rules naming it, in order.
fn rules_by_number<'a>(arch: Arch, rules: &[&'a Rule]) -> BTreeMap<u32, (&'a str, Vec<&'a Rule>)> {
    let mut by_nr: BTreeMap<u32, (&str, Vec<&Rule>)> = BTreeMap::new();
    for rule in rules {
        for name in &rule.names {
            if let Some(nr) = arch.number(name) {
                by_nr
                    .entry(nr)
                    .or_insert_with(|| (name, Vec::new()))
                    .1
                    .push(rule);
            }
        }
    }
    by_nr
}

/// Compiles `rules` (resolved for the sandbox) for `arches` (the host's first).
pub(super) fn compile(
    arches: &[Arch],
    default: Action,
    rules: &[&Rule],
) -> Result<Vec<libc::sock_filter>, BpfError> {
    let mut asm = Asm::default();
    let bad_arch = ret_value(Action::KillProcess);
    asm.push(Insn::Load(DATA_ARCH));
    // x32 shares x86_64's audit architecture: one block for both.
    let blocks: Vec<(Arch, usize)> = arches
        .iter()
        .filter(|a| **a != Arch::X32)
        .map(|a| (*a, asm.label()))
        .collect();
    for (arch, l) in &blocks {
        asm.jeq_far(arch.audit(), *l);
    }
    asm.push(Insn::Ret(bad_arch));
    for (arch, l) in &blocks {
        asm.bind(*l);
        asm.push(Insn::Load(DATA_NR));
        if *arch == Arch::X86_64 {
            let x32 = asm.label();
            asm.jge_far(X32_SYSCALL_BIT, x32);
            dispatch(&mut asm, *arch, 0, default, rules)?;
            asm.bind(x32);
            if arches.contains(&Arch::X32) {
                dispatch(&mut asm, Arch::X32, X32_SYSCALL_BIT, default, rules)?;
            } else {
                asm.push(Insn::Ret(bad_arch));
            }
        } else {
            dispatch(&mut asm, *arch, 0, default, rules)?;
        }
    }
    let names = || {
        arches
            .iter()
            .map(|a| a.scmp_name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let prog = asm
        .assemble()
        .ok_or_else(|| BpfError::JumpOutOfRange { arches: names() })?;
    if prog.len() > MAX_INSNS {
        return Err(BpfError::TooLong {
            arches: names(),
            len: prog.len(),
        });
    }
    Ok(prog)
}

/// One architecture's block, with the number in `A`; numbers start at `base`.
fn dispatch(
    asm: &mut Asm,
    arch: Arch,
    base: u32,
    default: Action,
    rules: &[&Rule],
) -> Result<(), BpfError> {
    let by_nr = rules_by_number(arch, rules);
    let default_ret = ret_value(default);
    // Numbers above the highest named one: ENOSYS, unless the default lets calls run.
    let above = match default {
        Action::Allow | Action::Log => default_ret,
        _ => ret_value(Action::Errno(libc::ENOSYS as u16)),
    };
    let mut chains: Vec<(&str, Vec<&Rule>, usize)> = Vec::new();
    // Ranges as (first number, leaf), ascending, adjacent equal leaves merged.
    let mut ranges: Vec<(u32, Leaf)> = vec![(base, Leaf::Ret(default_ret))];
    let push = |ranges: &mut Vec<(u32, Leaf)>, start: u32, leaf: Leaf| {
        if ranges.last().map(|r| r.1) == Some(leaf) {
            return;
        }
        if ranges.last().map(|r| r.0) == Some(start) {
            ranges.pop();
            if ranges.last().map(|r| r.1) == Some(leaf) {
                return;
            }
        }
        ranges.push((start, leaf));
    };
    for (nr, (name, rs)) in &by_nr {
        let leaf = if rs[0].args.is_empty() {
            Leaf::Ret(ret_value(rs[0].action))
        } else {
            let l = asm.label();
            chains.push((name, rs.clone(), l));
            Leaf::Chain(l)
        };
        push(&mut ranges, *nr, leaf);
        push(&mut ranges, nr + 1, Leaf::Ret(default_ret));
    }
    if let Some(last) = by_nr.keys().next_back() {
        push(&mut ranges, last + 1, Leaf::Ret(above));
    }
    tree(asm, &ranges);
    for (name, rs, l) in chains {
        asm.bind(l);
        chain(asm, &rs, default_ret).map_err(|()| BpfError::ChainTooLong {
            syscall: name.to_owned(),
            arch: arch.scmp_name(),
        })?;
    }
    Ok(())
}

/// A binary search over `ranges` (the number in `A`, at least the first range's start).
fn tree(asm: &mut Asm, ranges: &[(u32, Leaf)]) {
    if let [(_, leaf)] = ranges {
        match *leaf {
            Leaf::Ret(k) => asm.push(Insn::Ret(k)),
            Leaf::Chain(l) => asm.push(Insn::Always(l)),
        }
        return;
    }
    let mid = ranges.len() / 2;
    let upper = asm.label();
    asm.jge_far(ranges[mid].0, upper);
    tree(asm, &ranges[..mid]);
    asm.bind(upper);
    tree(asm, &ranges[mid..]);
}

/// The most argument checks one rule may have: every jump of a rule stays inside it, and
/// a check takes at most six instructions, so this many stay within a jump's reach.
const MAX_CHECKS: usize = 32;

/// A call's rule chain: the first rule whose checks all hold gives its action.
fn chain(asm: &mut Asm, rules: &[&Rule], default_ret: u32) -> Result<(), ()> {
    for rule in rules {
        if rule.args.len() > MAX_CHECKS {
            return Err(());
        }
        let next = asm.label();
        for c in &rule.args {
            check(asm, c, next);
        }
        asm.push(Insn::Ret(ret_value(rule.action)));
        asm.bind(next);
    }
    asm.push(Insn::Ret(default_ret));
    Ok(())
}

/// One argument check: falls through when it holds, jumps to `fail` when not.
fn check(asm: &mut Asm, c: &ArgCheck, fail: usize) {
    let off = DATA_ARGS + 8 * u32::from(c.index);
    // Little-endian: the low half first, the high half 4 bytes on.
    let (lo, hi) = (off, off + 4);
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    let pass = asm.label();
    let (p, f, n) = (Target::Label(pass), Target::Label(fail), Target::Next);
    let (vh, vl) = split(c.value);
    match c.op {
        Op::Equal | Op::NotEqual => {
            let (eq, ne) = if c.op == Op::Equal { (p, f) } else { (f, p) };
            asm.push(Insn::Load(hi));
            asm.jump(BPF_JEQ_K, vh, n, ne);
            asm.push(Insn::Load(lo));
            asm.jump(BPF_JEQ_K, vl, eq, ne);
        }
        Op::MaskedEqual => {
            let (mh, ml) = (vh, vl);
            let (ch, cl) = split(c.value_two);
            asm.push(Insn::Load(hi));
            asm.push(Insn::And(mh));
            asm.jump(BPF_JEQ_K, ch, n, f);
            asm.push(Insn::Load(lo));
            asm.push(Insn::And(ml));
            asm.jump(BPF_JEQ_K, cl, p, f);
        }
        Op::GreaterThan | Op::GreaterOrEqual | Op::LessThan | Op::LessOrEqual => {
            // arg > v (or >=): high half above -> yes; equal -> compare the low half.
            let (above, below) = match c.op {
                Op::GreaterThan | Op::GreaterOrEqual => (p, f),
                _ => (f, p),
            };
            let low_code = match c.op {
                Op::GreaterThan | Op::LessOrEqual => BPF_JGT_K,
                _ => BPF_JGE_K,
            };
            asm.push(Insn::Load(hi));
            asm.jump(BPF_JGT_K, vh, above, n);
            asm.jump(BPF_JEQ_K, vh, n, below);
            asm.push(Insn::Load(lo));
            asm.jump(low_code, vl, above, below);
        }
    }
    asm.bind(pass);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Runs `prog` on a `seccomp_data` the way the kernel does; returns the action value.
    pub(crate) fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_le_bytes());
        data.extend_from_slice(&arch.to_le_bytes());
        data.extend_from_slice(&0u64.to_le_bytes());
        for a in args {
            data.extend_from_slice(&a.to_le_bytes());
        }
        let word = |off: u32| {
            let o = off as usize;
            u32::from_le_bytes(data[o..o + 4].try_into().expect("4 bytes"))
        };
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            let cond = |taken: bool| if taken { i.jt } else { i.jf } as usize;
            match i.code {
                BPF_LD_W_ABS => a = word(i.k),
                BPF_ALU_AND_K => a &= i.k,
                BPF_JA => pc += i.k as usize,
                BPF_JEQ_K => pc += cond(a == i.k),
                BPF_JGT_K => pc += cond(a > i.k),
                BPF_JGE_K => pc += cond(a >= i.k),
                BPF_RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn one(op: Op, value: u64, value_two: u64) -> Rule {
        let mut r = Rule::new(&["read"], Action::Allow);
        r.args = vec![ArgCheck {
            index: 1,
            op,
            value,
            value_two,
        }];
        r
    }

    #[test]
    fn comparisons_are_unsigned_64_bit() {
        let allow = ret_value(Action::Allow);
        let eperm = ret_value(Action::Errno(1));
        let values = [
            0u64,
            1,
            5,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_0000_0005,
            u64::MAX,
        ];
        for (op, holds) in [
            (Op::Equal, (|a, v| a == v) as fn(u64, u64) -> bool),
            (Op::NotEqual, |a, v| a != v),
            (Op::LessThan, |a, v| a < v),
            (Op::LessOrEqual, |a, v| a <= v),
            (Op::GreaterThan, |a, v| a > v),
            (Op::GreaterOrEqual, |a, v| a >= v),
        ] {
            for v in values {
                let rule = one(op, v, 0);
                let prog = compile(&[Arch::X86_64], Action::Errno(1), &[&rule]).expect("compiles");
                for a in values {
                    let got = run(&prog, Arch::X86_64.audit(), 0, [0, a, 0, 0, 0, 0]);
                    let want = if holds(a, v) { allow } else { eperm };
                    assert_eq!(got, want, "{a:#x} {op:?} {v:#x}");
                }
            }
        }
        let rule = one(Op::MaskedEqual, 0x1_0000_00f0, 0x1_0000_0010);
        let prog = compile(&[Arch::X86_64], Action::Errno(1), &[&rule]).expect("compiles");
        for (a, want) in [
            (0x1_0000_0010u64, allow),
            (0x3_0000_001f, allow),
            (0x10, eperm),
            (0x1_0000_0020, eperm),
        ] {
            assert_eq!(
                run(&prog, Arch::X86_64.audit(), 0, [0, a, 0, 0, 0, 0]),
                want,
                "{a:#x}"
            );
        }
    }

    #[test]
    fn rules_match_in_order_and_gaps_get_the_default() {
        let mut deny_mkdir = Rule::new(&["mkdir"], Action::Errno(13));
        deny_mkdir.args.clear();
        let allow = Rule::new(&["read", "write", "mkdir"], Action::Allow);
        let prog =
            compile(&[Arch::X86_64], Action::Errno(1), &[&deny_mkdir, &allow]).expect("compiles");
        let x = Arch::X86_64;
        let nr = |n| x.number(n).expect("known");
        assert_eq!(
            run(&prog, x.audit(), nr("mkdir"), [0; 6]),
            ret_value(Action::Errno(13))
        );
        assert_eq!(
            run(&prog, x.audit(), nr("read"), [0; 6]),
            ret_value(Action::Allow)
        );
        assert_eq!(
            run(&prog, x.audit(), nr("write"), [0; 6]),
            ret_value(Action::Allow)
        );
        assert_eq!(
            run(&prog, x.audit(), nr("open"), [0; 6]),
            ret_value(Action::Errno(1))
        );
        // Above every named call: ENOSYS.
        assert_eq!(
            run(&prog, x.audit(), 1000, [0; 6]),
            ret_value(Action::Errno(38))
        );
        // x32 not covered, nor an architecture that is not listed.
        assert_eq!(
            run(&prog, x.audit(), X32_SYSCALL_BIT, [0; 6]),
            ret_value(Action::KillProcess)
        );
        assert_eq!(
            run(&prog, Arch::X86.audit(), 3, [0; 6]),
            ret_value(Action::KillProcess)
        );
    }
}
