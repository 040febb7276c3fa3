// SPDX-License-Identifier: GPL-2.0
/* cowtrace.bpf.c: counts write-protect faults per process and tells a copy
 * from a reuse, a zero-fill, a file copy and a shared write.
 *
 * Three variants of the fault-path hooks live in this one object; the loader
 * keeps the tier the running kernel allows and switches the others off before
 * load (libbpf-tools style):
 *   fentry:     do_wp_page, wp_page_copy, do_huge_pmd_wp_page, do_cow_fault (or do_fault)
 *   kprobe:     the same functions
 *   tracepoint: tp_btf page_fault_user + mm_page_alloc + rss_stat
 * When wp_page_copy is inlined (6.18 x86), the fentry and kprobe tiers find the
 * copy by its page allocation between do_wp_page's entry and exit instead; when
 * do_cow_fault and do_fault both are, its file copy the tracepoint tier's way.
 *
 * The kernel counts (per-CPU hash, key tgid): user space only sums and prints. */
#include "cowtrace_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "cowtrace.h"

char LICENSE[] SEC("license") = "GPL";

const volatile struct cowtrace_config cowtrace_cfg = {};

#include "cowtrace_maps.bpf.h"

/* Live processes: counters in a slot of process_slots, found from the tgid
 * through pid_slots (see cowtrace.h). Both are arrays: the verifier inlines
 * their lookups, so a fault pays no helper call to find its process. User
 * space sizes both (maxProcesses, kernel.pid_max) before load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16385);
	__type(key, __u32);
	__type(value, struct cowtrace_process_slot);
} process_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cowtrace_pid_slot_pair);
} pid_slots SEC(".maps");

/* --threads: the same scheme per thread, keyed by tid (sized 1 unless on). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cowtrace_process_slot);
} thread_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cowtrace_pid_slot_pair);
} tid_slots SEC(".maps");

/* Threads that exited, by tid: their final counters and name. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cowtrace_process_slot);
} exited_threads SEC(".maps");

/* Where the next slot allocation starts looking. */
__u32 next_slot_hint = 0;
__u32 next_thread_slot_hint = 0;

/* Processes whose last thread exited: their final counters, by tgid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cowtrace_pid_counters);
} exited_counters SEC(".maps");

/* Every traced process, by tgid: the registry user space walks. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cowtrace_pid_info);
} pid_info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cowtrace_fork_record);
} fork_records SEC(".maps");

/* Threads inside a fork-family syscall, by tid: entry time, and the child
 * sched_process_fork saw (its global tgid: the syscall returns the pid in the
 * parent's namespace, which is not the key of fork_records in a container). */
struct fork_in_progress {
	__u64 start_ns;
	__u32 child;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct fork_in_progress);
} fork_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

/* Per-process histograms (cfg.histograms), allocated on first use. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384 * COWTRACE_HIST_NR);
	__type(key, struct cowtrace_hist_key);
	__type(value, struct cowtrace_hist);
} histograms SEC(".maps");

/* --stacks: user stacks of copy faults, and copies per (process, stack). */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
	__uint(max_entries, 16384);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct cowtrace_stack_key);
	__type(value, __u64);
} stack_copies SEC(".maps");

static __always_inline void note_identity(__u32 tgid, __u32 ppid, struct task_struct *task, bool at_fork);

/* The index entry (pid_slots or tid_slots) of id, or NULL when id is beyond
 * kernel.pid_max as it was at load. */
static __always_inline __u32 *slot_index_entry(void *index_map, __u32 id)
{
	__u32 index = id >> 1;
	struct cowtrace_pid_slot_pair *pair = bpf_map_lookup_elem(index_map, &index);
	if (!pair)
		return 0;
	__u32 *entry = &pair->slot[id & 1];
	/* Keep clang from computing entry before the null check (the
	 * verifier refuses arithmetic on a maybe-null pointer). */
	asm volatile("" : "+r"(entry));
	return entry;
}

/* The slot if id owns it. */
static __always_inline struct cowtrace_process_slot *slot_owned(void *slots_map, __u32 slot, __u32 id)
{
	struct cowtrace_process_slot *s = bpf_map_lookup_elem(slots_map, &slot);
	if (!s || s->id != id || !id)
		return 0;
	return s;
}

/* The counters in process slot `slot` if tgid owns it. */
static __always_inline struct cowtrace_pid_counters *counters_in_slot(__u32 slot, __u32 tgid)
{
	struct cowtrace_process_slot *s = slot_owned(&process_slots, slot, tgid);
	return s ? &s->counters : 0;
}

/* The slot id owns through the index, or NULL. *slot_out gets its number. */
static __always_inline struct cowtrace_process_slot *slot_by_id(void *slots_map, void *index_map, __u32 id, __u32 *slot_out)
{
	__u32 *entry = slot_index_entry(index_map, id);
	if (!entry)
		return 0;
	__u32 slot = *entry;
	if (!slot)
		return 0;
	*slot_out = slot;
	return slot_owned(slots_map, slot, id);
}

/* The counters of a traced process by tgid, or NULL. *slot_out gets its slot. */
static __always_inline struct cowtrace_pid_counters *counters_by_tgid(__u32 tgid, __u32 *slot_out)
{
	struct cowtrace_process_slot *s = slot_by_id(&process_slots, &pid_slots, tgid, slot_out);
	return s ? &s->counters : 0;
}

/* Starts counting id: claims a free slot (compare-and-swap on its owner, up
 * to 64 tries from a rotating hint), zeroes it and publishes it in the index.
 * Two CPUs registering the same id agree on one slot. For processes, the
 * kernel side (forks, --all) and user space (the register_process program)
 * both come here. Returns the slot, 0 when none could be had (counted). */
static __always_inline __u32 claim_slot(void *slots_map, void *index_map, __u32 nslots, __u32 *hint,
					__u32 id, __u32 tgid)
{
	__u32 *entry = slot_index_entry(index_map, id);
	if (!entry || !id) {
		count_drop(COWTRACE_DROP_PID_MAP_FULL);
		return 0;
	}
	__u32 current = *entry;
	if (current && slot_owned(slots_map, current, id))
		return current;
	if (nslots < 2) {
		count_drop(COWTRACE_DROP_PID_MAP_FULL);
		return 0;
	}
	for (int i = 0; i < 64; i++) {
		__u32 slot = __sync_fetch_and_add(hint, 1) % (nslots - 1) + 1;
		struct cowtrace_process_slot *s = bpf_map_lookup_elem(slots_map, &slot);
		if (!s)
			break;
		if (s->id || __sync_val_compare_and_swap(&s->id, 0, id) != 0)
			continue;
		__builtin_memset(&s->counters, 0, sizeof(s->counters));
		s->tgid = tgid;
		__u32 seen = __sync_val_compare_and_swap(entry, current, slot);
		if (seen == current)
			return slot;
		/* Another CPU registered id meanwhile: use its slot. */
		s->id = 0;
		return slot_owned(slots_map, seen, id) ? seen : 0;
	}
	count_drop(COWTRACE_DROP_PID_MAP_FULL);
	return 0;
}

/* Stops counting id (it exited): frees its slot. */
static __always_inline void release_slot(void *slots_map, void *index_map, __u32 id, __u32 slot)
{
	__u32 *entry = slot_index_entry(index_map, id);
	if (entry)
		__sync_val_compare_and_swap(entry, slot, 0);
	struct cowtrace_process_slot *s = bpf_map_lookup_elem(slots_map, &slot);
	if (s)
		__sync_val_compare_and_swap(&s->id, id, 0);
}

static __always_inline __u32 register_tgid(__u32 tgid)
{
	return claim_slot(&process_slots, &pid_slots, cowtrace_cfg.process_slots, &next_slot_hint, tgid, tgid);
}

/* --threads: the counters of the current thread `task` of a traced process,
 * counted from its first write-protect fault on. */
static __always_inline struct cowtrace_pid_counters *thread_counters(struct task_struct *task, __u32 *slot_out)
{
	__u32 tid = task->pid;
	struct cowtrace_process_slot *s = slot_by_id(&thread_slots, &tid_slots, tid, slot_out);
	if (s)
		return &s->counters;
	__u32 slot = claim_slot(&thread_slots, &tid_slots, cowtrace_cfg.thread_slots, &next_thread_slot_hint,
				tid, task->tgid);
	if (!slot)
		return 0;
	s = slot_owned(&thread_slots, slot, tid);
	if (!s)
		return 0;
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	*slot_out = slot;
	return &s->counters;
}

/* --threads: a thread exits: its counters move to exited_threads. */
static __always_inline void thread_exited(struct task_struct *task)
{
	__u32 tid = task->pid, slot = 0;
	struct cowtrace_process_slot *s = slot_by_id(&thread_slots, &tid_slots, tid, &slot);
	if (!s)
		return;
	struct cowtrace_process_slot final = *s;
	BPF_CORE_READ_STR_INTO(&final.comm, task, comm);
	if (bpf_map_update_elem(&exited_threads, &tid, &final, BPF_ANY))
		count_drop(COWTRACE_DROP_PID_MAP_FULL);
	release_slot(&thread_slots, &tid_slots, tid, slot);
}

/* The counters of the process `task` belongs to, or NULL when it is not
 * traced. With trace_all, a process seen for the first time is registered.
 * *slot_out gets the process's slot. */
static __always_inline struct cowtrace_pid_counters *counters_of_slot(struct task_struct *task, __u32 *slot_out)
{
	__u32 tgid = task->tgid;
	struct cowtrace_pid_counters *c = counters_by_tgid(tgid, slot_out);
	if (c || !cowtrace_cfg.trace_all)
		return c;
	__u32 slot = register_tgid(tgid);
	if (!slot)
		return 0;
	struct task_struct *leader = task->group_leader;
	note_identity(tgid, BPF_CORE_READ(leader, real_parent, tgid), leader, false);
	*slot_out = slot;
	return counters_in_slot(slot, tgid);
}

static __always_inline struct cowtrace_pid_counters *counters_of(struct task_struct *task)
{
	__u32 slot;
	return counters_of_slot(task, &slot);
}

static __always_inline struct cowtrace_pid_counters *current_counters(void)
{
	return counters_of(bpf_get_current_task_btf());
}

/* Starts counting a new process (fork of a traced one, or cowtrace -c). */
static __always_inline struct cowtrace_pid_counters *start_counting(struct task_struct *task)
{
	__u32 tgid = task->tgid;
	__u32 slot = register_tgid(tgid);
	return slot ? counters_in_slot(slot, tgid) : 0;
}

static __always_inline void emit(__u8 type, __u8 class_, __u32 tgid, __u32 tid,
				 __u64 address, __u64 ip, __u32 other_pid)
{
	bool with_comm = type == COWTRACE_EVENT_FORK || type == COWTRACE_EVENT_EXEC || type == COWTRACE_EVENT_EXIT;
	if (!cowtrace_cfg.emit_events && !(cowtrace_cfg.process_events && with_comm))
		return;
	struct cowtrace_event *e = bpf_ringbuf_reserve(&events, with_comm ? sizeof(*e) : COWTRACE_SHORT_EVENT_SIZE, 0);
	if (!e) {
		count_drop(COWTRACE_DROP_RINGBUF_FULL);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->address = address;
	e->ip = ip;
	e->pid = tgid;
	e->tid = tid;
	e->other_pid = other_pid;
	e->type = type;
	e->class_ = class_;
	e->pad[0] = e->pad[1] = 0;
	if (with_comm)
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* Without wakeups the reader polls on a timer, except for an exec: the
	 * recorder reads the new program's maps while the process still runs. */
	__u64 flags = 0;
	if (type == COWTRACE_EVENT_EXEC)
		flags = BPF_RB_FORCE_WAKEUP;
	else if (cowtrace_cfg.no_wakeup)
		flags = BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

/* ---- histograms (cfg.histograms) and stacks (cfg.user_stacks) ----------- */

static __always_inline struct cowtrace_hist *hist_of(__u32 tgid, __u32 kind)
{
	struct cowtrace_hist_key key = { .tgid = tgid, .kind = kind };
	static const struct cowtrace_hist zero = {};
	return lookup_or_try_init(&histograms, &key, &zero, COWTRACE_DROP_HIST_MAP_FULL);
}

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 r = 0, shift;
	shift = (v > 0xFFFFFFFFULL) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	/* Keep clang from folding the mask into the shifts above: the 6.1
	 * verifier must see the final slot bounded. */
	asm volatile("" : "+r"(r));
	return r & (COWTRACE_HIST_SLOTS - 1);
}

static __always_inline void hist_record(struct cowtrace_hist *h, __u64 value)
{
	__u32 slot = log2_slot(value);
	ADD(h->slots[slot], 1);
	ADD(h->sum, value);
	ADD(h->count, 1);
}

static __always_inline void hist_add(__u32 tgid, __u32 kind, __u64 value)
{
	struct cowtrace_hist *h = hist_of(tgid, kind);
	if (h)
		hist_record(h, value);
}

/* One more copy for the burst-size histogram: copies are counted per interval
 * of cfg.burst_interval_ns; an interval's count is bucketed when the next
 * copy falls after it (or at exit). Threads racing on two CPUs may merge. */
static __always_inline void burst_add(__u32 tgid, struct cowtrace_pid_counters *c)
{
	/* Reading the clock is most of this function's cost (tens of ns in a
	 * VM): inside a burst of 16 copies or more, read it every 16th copy. A
	 * burst can then take up to 15 copies of the next interval; the copies
	 * still add up exactly. */
	__u64 open = c->burst_copies;
	if (open >= 16 && (open & 15)) {
		ADD(c->burst_copies, 1);
		return;
	}
	__u64 now = bpf_ktime_get_ns();
	if (now - c->burst_start_ns < cowtrace_cfg.burst_interval_ns) {
		ADD(c->burst_copies, 1);
		return;
	}
	__u64 closed = c->burst_copies;
	c->burst_start_ns = now;
	c->burst_copies = 1;
	if (closed)
		hist_add(tgid, COWTRACE_HIST_COPIES_PER_INTERVAL, closed);
}

static __always_inline void burst_flush(__u32 tgid, struct cowtrace_pid_counters *c)
{
	__u64 open = c->burst_copies;
	c->burst_copies = 0;
	if (open)
		hist_add(tgid, COWTRACE_HIST_COPIES_PER_INTERVAL, open);
}

/* The histogram kind of a write-protect fault in `vma`, from its flags, file
 * and the mm's heap and stack bounds. */
static __always_inline __u32 mapping_hist_kind(struct vm_area_struct *vma, struct mm_struct *mm)
{
	unsigned long flags = BPF_CORE_READ(vma, vm_flags);
	if (flags & (VM_SHARED | VM_MAYSHARE))
		return COWTRACE_HIST_OFFSET_SHARED;
	if (BPF_CORE_READ(vma, vm_file))
		return COWTRACE_HIST_OFFSET_FILE_PRIVATE;
	unsigned long start = BPF_CORE_READ(vma, vm_start), end = BPF_CORE_READ(vma, vm_end);
	unsigned long start_brk = BPF_CORE_READ(mm, start_brk), brk = BPF_CORE_READ(mm, brk);
	unsigned long stack = BPF_CORE_READ(mm, start_stack);
	if (start <= brk && end >= start_brk)
		return COWTRACE_HIST_OFFSET_HEAP;
	if (start <= stack && end >= stack)
		return COWTRACE_HIST_OFFSET_STACK;
	return COWTRACE_HIST_OFFSET_ANON;
}

static __always_inline void offset_add(__u32 tgid, struct vm_area_struct *vma, __u64 address)
{
	struct mm_struct *mm = BPF_CORE_READ(vma, vm_mm);
	hist_add(tgid, mapping_hist_kind(vma, mm), address - BPF_CORE_READ(vma, vm_start));
}

/* A copy happened in the current thread: histograms and stacks. */
static __always_inline void note_copy(void *ctx, __u32 tgid, struct cowtrace_pid_counters *c)
{
	if (cowtrace_cfg.histograms)
		burst_add(tgid, c);
	if (cowtrace_cfg.user_stacks) {
		struct cowtrace_stack_key key = { .tgid = tgid };
		key.stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
		__u64 zero = 0, *n = lookup_or_try_init(&stack_copies, &key, &zero, COWTRACE_DROP_HIST_MAP_FULL);
		if (n)
			ADD(*n, 1);
	}
}

#include "cowtrace_fault.bpf.h"
#include "cowtrace_fault_fentry.bpf.h"
#include "cowtrace_fault_tp.bpf.h"

/* Recording: every not-present user fault of a traced process (the model
 * needs to know which pages were populated, and how). */
SEC("tp_btf/page_fault_user")
int BPF_PROG(tp_first_touch, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	if (error_code & X86_PF_PROT)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (!counters_of(task))
		return 0;
	/* No VMA lookup here: bpf_find_vma costs microseconds on this path (its
	 * mmap_lock unlock is deferred through irq_work with IRQs off). The
	 * write-protect fault that matters carries the VMA kind. */
	emit(COWTRACE_EVENT_FIRST_TOUCH, 0, task->tgid, task->pid, address, regs->ip, (__u32)(error_code & 0xff));
	return 0;
}

/* ---- processes: fork, exec, exit (tp_btf on every tier) --------------- */

static __always_inline void note_identity(__u32 tgid, __u32 ppid, struct task_struct *task, bool at_fork)
{
	struct cowtrace_pid_info fresh = { .ppid = ppid };
	struct cowtrace_pid_info *info = lookup_or_try_init(&pid_info, &tgid, &fresh, COWTRACE_DROP_INFO_MAP_FULL);
	if (!info)
		return;
	if (at_fork) {
		/* A recycled pid starts afresh: nothing of the old process stays. */
		info->ppid = ppid;
		info->start_ns = bpf_ktime_get_ns();
		info->exited = 0;
		info->exit_ns = 0;
		info->exit_code = 0;
		bpf_map_delete_elem(&exited_counters, &tgid);
	}
	BPF_CORE_READ_STR_INTO(&info->comm, task, comm);
}

static __always_inline __u64 copies_of(struct task_struct *task)
{
	__u32 slot;
	struct cowtrace_pid_counters *c = counters_by_tgid(task->tgid, &slot);
	return c ? c->copies + c->file_copies : 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tp_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = parent->tgid, child_tgid = child->tgid;
	if (parent_tgid == child_tgid)
		return 0; /* a new thread, not a process */
	struct cowtrace_pid_counters *pc = counters_of(parent);
	bool spawned = cowtrace_cfg.spawner_tgid && parent_tgid == cowtrace_cfg.spawner_tgid;
	if (!pc && !spawned)
		return 0;
	if (pc)
		ADD(pc->forks, 1);
	if (!start_counting(child))
		return 0;
	note_identity(child_tgid, parent_tgid, child, true);
	if (cowtrace_cfg.fork_lineage && pc) {
		struct cowtrace_fork_record r = {};
		r.parent = parent_tgid;
		r.child = child_tgid;
		r.fork_ns = bpf_ktime_get_ns();
		r.total_vm_pages = BPF_CORE_READ(parent, mm, total_vm);
		r.parent_copies_at_fork = pc->copies + pc->file_copies;
		if (bpf_map_update_elem(&fork_records, &child_tgid, &r, BPF_ANY))
			count_drop(COWTRACE_DROP_INFO_MAP_FULL);
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		struct fork_in_progress *f = bpf_map_lookup_elem(&fork_start, &tid);
		if (f)
			f->child = child_tgid;
	}
	emit(COWTRACE_EVENT_FORK, 0, parent_tgid, (__u32)bpf_get_current_pid_tgid(), 0, 0, child_tgid);
	return 0;
}

/* The first exec or exit of a forked child closes its fork's attribution. */
static __always_inline void end_fork(struct task_struct *p, __u8 how)
{
	__u32 tgid = p->tgid;
	struct cowtrace_fork_record *r = bpf_map_lookup_elem(&fork_records, &tgid);
	if (!r || r->ended_by != COWTRACE_FORK_RUNNING)
		return;
	r->end_ns = bpf_ktime_get_ns();
	r->child_copies_at_end = copies_of(p);
	struct task_struct *parent = p->real_parent;
	if (parent && parent->tgid == r->parent)
		r->parent_copies_at_end = copies_of(parent);
	else
		r->parent_copies_at_end = r->parent_copies_at_fork; /* parent gone: nothing more to attribute */
	r->ended_by = how;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tp_sched_process_exec, struct task_struct *p, pid_t old_pid, void *bprm)
{
	/* Keyed by tgid, the counters survive an exec by a non-leader thread
	 * (de_thread gives it the leader's pid). */
	struct cowtrace_pid_counters *c = counters_of(p);
	if (!c)
		return 0;
	ADD(c->execs, 1);
	if (cowtrace_cfg.fork_lineage)
		end_fork(p, COWTRACE_FORK_ENDED_BY_EXEC);
	note_identity(p->tgid, BPF_CORE_READ(p, real_parent, tgid), p, false);
	emit(COWTRACE_EVENT_EXEC, 0, p->tgid, p->pid, 0, 0, 0);
	return 0;
}

/* When the last thread of a traced process exits, its counters move from its
 * process slot to exited_counters, where user space finds them by tgid. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(tp_sched_process_exit, struct task_struct *p)
{
	if (cowtrace_cfg.per_thread)
		thread_exited(p);
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0; /* other threads still run */
	__u32 tgid = p->tgid, slot = 0;
	struct cowtrace_pid_counters *c = counters_by_tgid(tgid, &slot);
	if (!c)
		return 0;
	if (cowtrace_cfg.histograms)
		burst_flush(tgid, c);
	/* The fork record reads the child's counters from its slot: close it
	 * before the slot is freed, or a child that exits without exec shows
	 * 0 copies. */
	if (cowtrace_cfg.fork_lineage)
		end_fork(p, COWTRACE_FORK_ENDED_BY_EXIT);
	struct cowtrace_pid_counters final = *c;
	if (bpf_map_update_elem(&exited_counters, &tgid, &final, BPF_ANY))
		count_drop(COWTRACE_DROP_PID_MAP_FULL);
	release_slot(&process_slots, &pid_slots, tgid, slot);
	note_identity(tgid, BPF_CORE_READ(p, real_parent, tgid), p, false);
	struct cowtrace_pid_info *info = bpf_map_lookup_elem(&pid_info, &tgid);
	if (info) {
		info->exited = 1;
		info->exit_ns = bpf_ktime_get_ns();
		info->exit_code = p->exit_code;
	}
	emit(COWTRACE_EVENT_EXIT, 0, tgid, p->pid, 0, 0, p->exit_code);
	return 0;
}

/* ---- fork latency: the parent's time in the fork-family syscalls -------- */

#define NR_clone  56
#define NR_fork   57
#define NR_vfork  58
#define NR_clone3 435

static __always_inline bool is_fork_syscall(long nr)
{
	return nr == NR_clone || nr == NR_fork || nr == NR_vfork || nr == NR_clone3;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(tp_sys_enter_fork, struct pt_regs *regs, long id)
{
	if (!is_fork_syscall(id) || !current_counters())
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct fork_in_progress f = { .start_ns = bpf_ktime_get_ns() };
	if (bpf_map_update_elem(&fork_start, &tid, &f, BPF_ANY))
		count_drop(COWTRACE_DROP_INFO_MAP_FULL);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(tp_sys_exit_fork, struct pt_regs *regs, long ret)
{
	if (!is_fork_syscall(regs->orig_ax))
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct fork_in_progress *f = bpf_map_lookup_elem(&fork_start, &tid);
	if (!f)
		return 0;
	__u64 latency = bpf_ktime_get_ns() - f->start_ns;
	__u32 child = f->child;
	bpf_map_delete_elem(&fork_start, &tid);
	if (ret <= 0 || !child)
		return 0; /* the child's return, a failed fork, or a thread */
	struct cowtrace_fork_record *r = bpf_map_lookup_elem(&fork_records, &child);
	if (r)
		r->latency_ns = latency;
	return 0;
}

/* ---- recording: address-space changes of traced processes --------------- */

#define NR_mmap     9
#define NR_mprotect 10
#define NR_munmap   11
#define NR_brk      12
#define NR_mremap   25
#define NR_madvise  28

/* At the syscall's exit the saved user registers still hold its arguments. */
SEC("tp_btf/sys_exit")
int BPF_PROG(tp_sys_exit_vm, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;
	if (nr != NR_mmap && nr != NR_mprotect && nr != NR_munmap && nr != NR_brk &&
	    nr != NR_mremap && nr != NR_madvise)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (!counters_of(task))
		return 0;
	struct cowtrace_vm_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(COWTRACE_DROP_RINGBUF_FULL);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->result = ret;
	e->pid = task->tgid;
	e->tid = task->pid;
	e->nr = nr;
	e->type = COWTRACE_EVENT_ADDRESS_SPACE;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	e->arg0 = regs->di;
	e->arg1 = regs->si;
	e->arg2 = regs->dx;
	e->arg3 = regs->r10;
	e->arg4 = regs->r8;
	bpf_ringbuf_submit(e, cowtrace_cfg.no_wakeup ? BPF_RB_NO_WAKEUP : 0);
	return 0;
}

/* ---- user space: start counting an existing process ----------------------- */

/* Run by user space (BPF_PROG_TEST_RUN) for -p PID and cgroup members, so
 * that a slot is claimed with the same atomics as in the kernel paths. */
SEC("syscall")
int register_process(struct cowtrace_register_args *args)
{
	args->slot = register_tgid(args->tgid);
	return 0;
}

/* Undoes register_process for a process that exited before its slot was
 * claimed (its exit hook had already run). */
SEC("syscall")
int unregister_process(struct cowtrace_register_args *args)
{
	if (args->slot && counters_in_slot(args->slot, args->tgid))
		release_slot(&process_slots, &pid_slots, args->tgid, args->slot);
	return 0;
}
