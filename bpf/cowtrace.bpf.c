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
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cowtrace_pending_fault);
} pending_fault SEC(".maps");

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

/* A no-op cast the verifier inlines (6.2+); weak, so that kernels without it
 * load the object and take bpf_task_pt_regs instead. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) (!!(sym))
#endif

/* Counts one fault of class_ in c (the write-protect fault itself is
 * counted when it begins). */
static __always_inline void add_class(struct cowtrace_pid_counters *c, __u8 class_)
{
	switch (class_) {
	case COWTRACE_CLASS_COPY: ADD(c->copies, 1); break;
	case COWTRACE_CLASS_ZERO_FILL: ADD(c->zero_fills, 1); break;
	case COWTRACE_CLASS_FILE_COPY: ADD(c->file_copies, 1); break;
	case COWTRACE_CLASS_SHARED_WRITE: ADD(c->shared_writes, 1); break;
	}
}

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

static __always_inline struct cowtrace_pending_fault *pending(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&pending_fault, &zero);
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

struct find_vma_ctx {
	__u32 tgid;
	__u32 kind;     /* out: enum cowtrace_vma_kind (recording) */
	__u64 address;
	__u8  histogram;
	__u8  only_file_private; /* the offset histogram only if the VMA is a private file mapping */
	__u8  pad[6];
};

static __always_inline __u32 vma_kind(struct vm_area_struct *vma)
{
	if (BPF_CORE_READ(vma, vm_flags) & (VM_SHARED | VM_MAYSHARE))
		return COWTRACE_VMA_SHARED;
	return BPF_CORE_READ(vma, vm_file) ? COWTRACE_VMA_FILE_PRIVATE : COWTRACE_VMA_ANON_PRIVATE;
}

static long vma_found(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct find_vma_ctx *f = data;
	f->kind = vma_kind(vma);
	if (f->histogram && (!f->only_file_private || f->kind == COWTRACE_VMA_FILE_PRIVATE))
		offset_add(f->tgid, vma, f->address);
	return 0;
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

/* ---- fentry and kprobe tiers ------------------------------------------ */

static __always_inline int on_do_wp_page(struct vm_fault *vmf)
{
	__u32 slot = 0, thread_slot = 0;
	struct cowtrace_pid_counters *c = counters_of_slot(bpf_get_current_task_btf(), &slot);
	if (!c)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;

	struct vm_area_struct *vma = BPF_CORE_READ(vmf, vma);
	unsigned long vm_flags = BPF_CORE_READ(vma, vm_flags);
	__u64 address = BPF_CORE_READ(vmf, address);
	__u8 class_ = COWTRACE_CLASS_UNRESOLVED;

	ADD(c->wp_faults, 1);
	struct cowtrace_pid_counters *t = 0;
	if (cowtrace_cfg.per_thread) {
		t = thread_counters(bpf_get_current_task_btf(), &thread_slot);
		if (t)
			ADD(t->wp_faults, 1);
	}
	if (cowtrace_cfg.mapping_histograms)
		offset_add(tgid, vma, address);
	if (vm_flags & (VM_SHARED | VM_MAYSHARE)) {
		ADD(c->shared_writes, 1);
		if (t)
			ADD(t->shared_writes, 1);
		class_ = COWTRACE_CLASS_SHARED_WRITE;
	} else if (cowtrace_cfg.copy_by_alloc || cowtrace_cfg.histograms) {
		/* The copy's allocation (copy_by_alloc) and the fault's return
		 * (latency) find the fault here. */
		struct cowtrace_pending_fault *p = pending();
		if (p) {
			p->tid = tid;
			p->tgid = tgid;
			p->slot = slot;
			p->thread_slot = t ? thread_slot : 0;
			p->ip = 0;
			p->address = address;
			p->resolved = COWTRACE_CLASS_UNRESOLVED;
			p->not_present = 0;
			p->start_ns = cowtrace_cfg.histograms ? bpf_ktime_get_ns() : 0;
		}
	}
	if (cowtrace_cfg.emit_events)
		emit(COWTRACE_EVENT_WP_FAULT, class_, tgid, tid, address, 0, 3 /* present + write */ | vma_kind(vma) << 8);
	return 0;
}

/* wp_page_copy runs for every copy, zero-page fill included: classify it here. */
static __always_inline int on_wp_page_copy(void *ctx, struct vm_fault *vmf)
{
	struct cowtrace_pid_counters *c = current_counters();
	if (!c)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;

	struct page *page = BPF_CORE_READ(vmf, page);
	struct vm_area_struct *vma = BPF_CORE_READ(vmf, vma);
	struct file *file = BPF_CORE_READ(vma, vm_file);
	__u8 class_;

	if (!page)                         /* vm_normal_page() is NULL for the zero page */
		class_ = COWTRACE_CLASS_ZERO_FILL;
	else if (file && !((unsigned long)BPF_CORE_READ(page, mapping) & 1 /* PAGE_MAPPING_ANON */))
		class_ = COWTRACE_CLASS_FILE_COPY;
	else
		class_ = COWTRACE_CLASS_COPY;
	add_class(c, class_);
	if (cowtrace_cfg.per_thread) {
		__u32 thread_slot;
		struct cowtrace_pid_counters *t = thread_counters(bpf_get_current_task_btf(), &thread_slot);
		if (t)
			add_class(t, class_);
	}
	if (class_ != COWTRACE_CLASS_ZERO_FILL)
		note_copy(ctx, tgid, c);
	if (cowtrace_cfg.histograms) {
		struct cowtrace_pending_fault *p = pending();
		if (p && p->tid == (__u32)id)
			p->resolved = class_;
	}
	emit(COWTRACE_EVENT_RESOLVE, class_, tgid, (__u32)id, BPF_CORE_READ(vmf, address), 0, 0);
	return 0;
}

static __always_inline int on_do_wp_page_return(void)
{
	struct cowtrace_pending_fault *p = pending();
	if (!p || p->tid != (__u32)bpf_get_current_pid_tgid())
		return 0;
	if (cowtrace_cfg.histograms && p->start_ns &&
	    (p->resolved == COWTRACE_CLASS_COPY || p->resolved == COWTRACE_CLASS_FILE_COPY))
		hist_add(p->tgid, COWTRACE_HIST_COPY_LATENCY, bpf_ktime_get_ns() - p->start_ns);
	p->tid = 0;
	return 0;
}

static __always_inline int on_huge_pmd_wp_page(void)
{
	struct cowtrace_pid_counters *c = current_counters();
	if (c)
		ADD(c->thp_wp_faults, 1);
	return 0;
}

/* MAP_PRIVATE file copies of a not-present write: do_cow_fault (6.1: inlined
 * into do_fault, which is hooked then and filtered to its do_cow_fault
 * branch: a write in a private VMA that maps a file). Where both are inlined,
 * the tier takes the tracepoint tier's detection instead (tp_page_fault_user's
 * not-present write, then tp_mm_page_alloc): see TierPlanner. */
static __always_inline bool cow_fault_of_file(struct vm_fault *vmf, struct vm_area_struct **vma_out)
{
	if (!(BPF_CORE_READ(vmf, flags) & FAULT_FLAG_WRITE))
		return false;
	struct vm_area_struct *vma = BPF_CORE_READ(vmf, vma);
	*vma_out = vma;
	return !(BPF_CORE_READ(vma, vm_flags) & (VM_SHARED | VM_MAYSHARE)) && BPF_CORE_READ(vma, vm_file);
}

static __always_inline int on_cow_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = 0;
	if (!cow_fault_of_file(vmf, &vma))
		return 0;
	__u32 slot = 0;
	if (!counters_of_slot(bpf_get_current_task_btf(), &slot))
		return 0;
	struct cowtrace_pending_fault *p = pending();
	if (!p)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	p->tid = (__u32)id;
	p->tgid = id >> 32;
	p->slot = slot;
	p->thread_slot = 0;
	p->ip = 0;
	p->address = BPF_CORE_READ(vmf, address);
	p->vma = (__u64)vma;
	p->resolved = COWTRACE_CLASS_OTHER; /* counted at the return, not by the allocation hooks */
	p->not_present = 1;
	p->start_ns = cowtrace_cfg.histograms ? bpf_ktime_get_ns() : 0;
	return 0;
}

/* The page was copied unless the fault failed, is retried (then it comes
 * here again) or found the PTE already set by another thread. Per CPU: a
 * fault that sleeps on I/O and wakes on another CPU is not counted. */
static __always_inline int on_cow_fault_return(void *ctx, unsigned int ret)
{
	struct cowtrace_pending_fault *p = pending();
	if (!p || !p->not_present || p->tid != (__u32)bpf_get_current_pid_tgid())
		return 0;
	p->tid = 0;
	if (ret & COWTRACE_VM_FAULT_NOT_DONE)
		return 0;
	struct cowtrace_pid_counters *c = counters_in_slot(p->slot, p->tgid);
	if (!c)
		return 0;
	ADD(c->wp_faults, 1);
	ADD(c->file_copies, 1);
	if (cowtrace_cfg.per_thread) {
		__u32 thread_slot;
		struct cowtrace_pid_counters *t = thread_counters(bpf_get_current_task_btf(), &thread_slot);
		if (t) {
			ADD(t->wp_faults, 1);
			ADD(t->file_copies, 1);
		}
	}
	if (cowtrace_cfg.mapping_histograms)
		offset_add(p->tgid, (struct vm_area_struct *)p->vma, p->address);
	if (cowtrace_cfg.histograms && p->start_ns)
		hist_add(p->tgid, COWTRACE_HIST_COPY_LATENCY, bpf_ktime_get_ns() - p->start_ns);
	note_copy(ctx, p->tgid, c);
	emit(COWTRACE_EVENT_RESOLVE, COWTRACE_CLASS_FILE_COPY, p->tgid, (__u32)bpf_get_current_pid_tgid(), p->address, 0, 0);
	return 0;
}

SEC("fentry/do_cow_fault")
int BPF_PROG(fentry_do_cow_fault, struct vm_fault *vmf) { return on_cow_fault(vmf); }

SEC("fexit/do_cow_fault")
int BPF_PROG(fexit_do_cow_fault, struct vm_fault *vmf, unsigned int ret) { return on_cow_fault_return(ctx, ret); }

SEC("fentry/do_fault")
int BPF_PROG(fentry_do_fault, struct vm_fault *vmf) { return on_cow_fault(vmf); }

SEC("fexit/do_fault")
int BPF_PROG(fexit_do_fault, struct vm_fault *vmf, unsigned int ret) { return on_cow_fault_return(ctx, ret); }

SEC("kprobe/do_cow_fault")
int BPF_KPROBE(kprobe_do_cow_fault, struct vm_fault *vmf) { return on_cow_fault(vmf); }

SEC("kretprobe/do_cow_fault")
int BPF_KRETPROBE(kretprobe_do_cow_fault, unsigned int ret) { return on_cow_fault_return(ctx, ret); }

SEC("kprobe/do_fault")
int BPF_KPROBE(kprobe_do_fault, struct vm_fault *vmf) { return on_cow_fault(vmf); }

SEC("kretprobe/do_fault")
int BPF_KRETPROBE(kretprobe_do_fault, unsigned int ret) { return on_cow_fault_return(ctx, ret); }

SEC("fentry/do_wp_page")
int BPF_PROG(fentry_do_wp_page, struct vm_fault *vmf) { return on_do_wp_page(vmf); }

SEC("fexit/do_wp_page")
int BPF_PROG(fexit_do_wp_page, struct vm_fault *vmf, int ret) { return on_do_wp_page_return(); }

SEC("fentry/wp_page_copy")
int BPF_PROG(fentry_wp_page_copy, struct vm_fault *vmf) { return on_wp_page_copy(ctx, vmf); }

SEC("fentry/do_huge_pmd_wp_page")
int BPF_PROG(fentry_do_huge_pmd_wp_page, struct vm_fault *vmf) { return on_huge_pmd_wp_page(); }

SEC("kprobe/do_wp_page")
int BPF_KPROBE(kprobe_do_wp_page, struct vm_fault *vmf) { return on_do_wp_page(vmf); }

SEC("kretprobe/do_wp_page")
int BPF_KRETPROBE(kretprobe_do_wp_page) { return on_do_wp_page_return(); }

SEC("kprobe/wp_page_copy")
int BPF_KPROBE(kprobe_wp_page_copy, struct vm_fault *vmf) { return on_wp_page_copy(ctx, vmf); }

SEC("kprobe/do_huge_pmd_wp_page")
int BPF_KPROBE(kprobe_do_huge_pmd_wp_page) { return on_huge_pmd_wp_page(); }

/* ---- tracepoint tier ---------------------------------------------------- */

/* The counters of the faulting `task`, trying first the slot of this CPU's
 * last fault (most likely the same process's) before the pid index. */
static __always_inline struct cowtrace_pid_counters *fault_counters(struct cowtrace_pending_fault *p,
								     struct task_struct *task, __u32 *slot_out)
{
	__u32 tgid = task->tgid, slot = p->slot;
	struct cowtrace_pid_counters *c = 0;
	if (p->tgid == tgid)
		c = counters_in_slot(slot, tgid);
	if (!c) {
		slot = 0;
		c = counters_of_slot(task, &slot);
	}
	*slot_out = slot;
	return c;
}

/* Remembers a fault of a traced thread in p, for the allocation that may follow. */
static __always_inline void pend(struct cowtrace_pending_fault *p, struct task_struct *task, __u32 slot,
				 struct pt_regs *regs, unsigned long address, bool not_present)
{
	p->tid = task->pid;
	p->tgid = task->tgid;
	p->slot = slot;
	p->user_regs = (__u64)regs;
	p->thread_slot = 0;
	p->ip = regs->ip;
	p->address = address;
	p->resolved = COWTRACE_CLASS_UNRESOLVED;
	p->not_present = not_present;
}

/* x86 error code: present + write = a write-protect fault. Remember it per CPU
 * with the user ip; the allocation that follows inside the same exception
 * (same thread, still in an exception at that ip) is the copy.
 * Not present + write (0x6) is remembered too, uncounted: in a MAP_PRIVATE file
 * mapping do_cow_fault copies the page-cache page into a new page, and that
 * allocation (see tp_mm_page_alloc) makes it a file copy. */
SEC("tp_btf/page_fault_user")
int BPF_PROG(tp_page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	if (!(error_code & X86_PF_WRITE)) {
		/* Any other fault of the thread ends its pending one: a first
		 * touch at the same ip after a reuse must not pass for its copy. */
		struct cowtrace_pending_fault *p = pending();
		if (p && p->tid && p->tid == (__u32)bpf_get_current_pid_tgid())
			p->tid = 0;
		return 0;
	}
	struct cowtrace_pending_fault *p = pending();
	if (!p)
		return 0;
	/* One task pointer serves the filter, the ids and the counters: every
	 * helper call costs on this path. */
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 slot;
	struct cowtrace_pid_counters *c = fault_counters(p, task, &slot);
	if (!c) {
		if (p->tid == task->pid)
			p->tid = 0;
		return 0;
	}
	if (!(error_code & X86_PF_PROT)) {
		/* A first write (anonymous first touches are the most common
		 * fault): nothing more here, no VMA lookup. */
		pend(p, task, slot, regs, address, true);
		return 0;
	}
	if (cowtrace_cfg.fault_mode != COWTRACE_MODE_TRACEPOINT) {
		/* fentry/kprobe without a do_cow_fault hook: do_wp_page counts
		 * this one; the thread's not-present write is over. */
		if (p->tid == task->pid)
			p->tid = 0;
		return 0;
	}
	__u32 tgid = task->tgid, tid = task->pid;
	ADD(c->wp_faults, 1);
	__u64 ip = regs->ip;
	pend(p, task, slot, regs, address, false);
	if (cowtrace_cfg.per_thread) {
		struct cowtrace_pid_counters *t = thread_counters(task, &p->thread_slot);
		if (t)
			ADD(t->wp_faults, 1);
	}
	if (!cowtrace_cfg.mapping_histograms && !cowtrace_cfg.emit_events)
		return 0; /* stat: nothing more (the verifier drops the rest) */
	/* The VMA, for the mapping histograms and for recordings: the model
	 * needs the kind of a mapping it never saw made, which only happens in a
	 * process's start-up (its first faults after exec, before its maps could
	 * be read), so for recordings the lookup stops after 256 faults. It costs
	 * about 1 µs: its mmap_lock unlock goes through irq_work, IRQs being off. */
	struct find_vma_ctx f = { .tgid = tgid, .address = address, .histogram = cowtrace_cfg.mapping_histograms };
	bool lookup = cowtrace_cfg.mapping_histograms || (cowtrace_cfg.record_faults && c->wp_faults <= 256);
	if (lookup && bpf_find_vma(task, address, vma_found, &f, 0))
		count_drop(COWTRACE_DROP_VMA_BUSY);
	emit(COWTRACE_EVENT_WP_FAULT, COWTRACE_CLASS_UNRESOLVED, tgid, tid, address, ip,
	     (__u32)(error_code & 0xff) | f.kind << 8);
	return 0;
}

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

/* True while `task` is still inside the user fault recorded in p. */
static __always_inline bool in_pending_fault(struct cowtrace_pending_fault *p, struct task_struct *task)
{
	if (!p->tid || p->tid != task->pid)
		return false;
	if (cowtrace_cfg.fault_mode != COWTRACE_MODE_TRACEPOINT && !p->not_present)
		return true; /* fentry/kprobe: the window closes at do_wp_page's return */
	/* The user pt_regs show an exception (orig_ax == -1, a syscall would show
	 * its number) at the faulting ip: the fault has not returned yet. */
	struct pt_regs *regs;
	if (bpf_ksym_exists(bpf_rdonly_cast))
		/* The pt_regs page_fault_user was given, read without a helper
		 * call (bpf_task_pt_regs costs ~40 ns here): p->tid is this
		 * thread, so they are its user registers. */
		regs = bpf_rdonly_cast((void *)p->user_regs, bpf_core_type_id_kernel(struct pt_regs));
	else
		regs = (struct pt_regs *)bpf_task_pt_regs(task);
	return regs->orig_ax == (unsigned long)-1 && regs->ip == p->ip;
}

/* The first order-0 movable allocation of a not-present write fault (x86 0x6)
 * without __GFP_ZERO. In a MAP_PRIVATE file VMA that is do_cow_fault's new
 * page, allocated before it reads the page cache: a file copy, counted as a
 * copy-on-write fault (wp_faults) of class file copy, so that reuses (derived)
 * stay exact. Other allocations here are no file copy:
 *   - anonymous first touches allocate a zeroed page (__GFP_ZERO: the caller
 *     ends the fault there) or a large folio (order > 0, never seen here);
 *   - swap-in of an anonymous VMA's page, and the page-cache read of a
 *     MAP_SHARED file write (do_shared_fault), are told by the VMA, looked up
 *     only now, for the few faults that get this far;
 *   - readahead of the private file's own page-cache page comes after the
 *     copy's page (do_cow_fault allocates first): the fault is resolved by then;
 *   - swap-in of a copied page swapped out of a private file VMA: its swap
 *     count drops right after (tp_rss_stat undoes the file copy; on 6.2+,
 *     where rss_stat fires on every change).
 * Left over: a NUMA-balancing migration in a private file VMA (protnone PTE,
 * also 0x6) and a write past EOF (SIGBUS after the allocation). */
static __always_inline int not_present_alloc(void *ctx, struct cowtrace_pending_fault *p, struct task_struct *task)
{
	p->resolved = COWTRACE_CLASS_OTHER; /* whatever the VMA says, later allocations are not the copy */
	struct cowtrace_pid_counters *c = counters_in_slot(p->slot, p->tgid);
	if (!c)
		return 0;
	struct find_vma_ctx f = { .tgid = p->tgid, .address = p->address, .histogram = cowtrace_cfg.mapping_histograms,
				  .only_file_private = 1 };
	if (bpf_find_vma(task, p->address, vma_found, &f, 0)) {
		count_drop(COWTRACE_DROP_VMA_BUSY);
		return 0;
	}
	if (f.kind != COWTRACE_VMA_FILE_PRIVATE)
		return 0;
	ADD(c->wp_faults, 1);
	ADD(c->file_copies, 1);
	if (cowtrace_cfg.per_thread) {
		struct cowtrace_pid_counters *t = thread_counters(task, &p->thread_slot);
		if (t) {
			ADD(t->wp_faults, 1);
			ADD(t->file_copies, 1);
		}
	}
	note_copy(ctx, p->tgid, c);
	p->resolved = COWTRACE_CLASS_FILE_COPY;
	emit(COWTRACE_EVENT_RESOLVE, COWTRACE_CLASS_FILE_COPY, p->tgid, p->tid, p->address, p->ip, 0);
	return 0;
}

SEC("tp_btf/mm_page_alloc")
int BPF_PROG(tp_mm_page_alloc, struct page *page, unsigned int order, gfp_t gfp_flags, int migratetype)
{
	if (order != 0 || !(gfp_flags & COWTRACE_GFP_MOVABLE))
		return 0;
	struct cowtrace_pending_fault *p = pending();
	if (!p || !p->tid || p->resolved != COWTRACE_CLASS_UNRESOLVED)
		return 0;
	if (p->not_present && (gfp_flags & COWTRACE_GFP_ZERO)) {
		/* An anonymous first touch, the most common case: done, without
		 * even reading the task (another task's zeroed page here would
		 * have faulted first, replacing p). */
		p->tid = 0;
		return 0;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	if (!in_pending_fault(p, task))
		return 0;
	if (p->not_present)
		return not_present_alloc(ctx, p, task);
	struct cowtrace_pid_counters *c = counters_in_slot(p->slot, p->tgid);
	if (!c)
		return 0;
	__u8 class_;
	if (gfp_flags & COWTRACE_GFP_ZERO) {
		ADD(c->zero_fills, 1);
		class_ = COWTRACE_CLASS_ZERO_FILL;
	} else {
		ADD(c->copies, 1);
		class_ = COWTRACE_CLASS_COPY;
		note_copy(ctx, p->tgid, c);
	}
	if (cowtrace_cfg.per_thread) {
		struct cowtrace_process_slot *t = slot_owned(&thread_slots, p->thread_slot, p->tid);
		if (t)
			add_class(&t->counters, class_);
	}
	p->resolved = class_;
	emit(COWTRACE_EVENT_RESOLVE, class_, p->tgid, p->tid, p->address, p->ip, 0);
	return 0;
}

/* A not-present write's file copy was a swap-in after all (do_swap_page drops
 * the swap count after its allocation): undone. */
static __always_inline int swap_in_not_file_copy(struct cowtrace_pending_fault *p)
{
	struct cowtrace_pid_counters *c = counters_in_slot(p->slot, p->tgid);
	if (!c)
		return 0;
	ADD(c->wp_faults, -1);
	ADD(c->file_copies, -1);
	if (cowtrace_cfg.per_thread) {
		struct cowtrace_process_slot *t = slot_owned(&thread_slots, p->thread_slot, p->tid);
		if (t) {
			ADD(t->counters.wp_faults, -1);
			ADD(t->counters.file_copies, -1);
		}
	}
	p->resolved = COWTRACE_CLASS_OTHER;
	/* Recordings: a first touch whose last resolve is not a file copy is no copy-on-write fault. */
	emit(COWTRACE_EVENT_RESOLVE, COWTRACE_CLASS_UNRESOLVED, p->tgid, p->tid, p->address, p->ip, 0);
	return 0;
}

/* wp_page_copy moves a MAP_PRIVATE file page's count from file (or shmem) to
 * anon: seen right after the copy's allocation, it makes that copy a file copy.
 * A drop of the swap count undoes a not-present write's file copy (above). */
SEC("tp_btf/rss_stat")
int BPF_PROG(tp_rss_stat, struct mm_struct *mm, int member)
{
	if (member != COWTRACE_MM_FILEPAGES && member != COWTRACE_MM_SHMEMPAGES && member != COWTRACE_MM_SWAPENTS)
		return 0;
	struct cowtrace_pending_fault *p = pending();
	if (!p || !p->tid)
		return 0;
	bool swap = member == COWTRACE_MM_SWAPENTS;
	if (swap ? !(p->not_present && p->resolved == COWTRACE_CLASS_FILE_COPY) : p->resolved != COWTRACE_CLASS_COPY)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (!in_pending_fault(p, task))
		return 0;
	if (swap)
		return swap_in_not_file_copy(p);
	struct cowtrace_pid_counters *c = counters_in_slot(p->slot, p->tgid);
	if (!c)
		return 0;
	ADD(c->copies, -1);
	ADD(c->file_copies, 1);
	if (cowtrace_cfg.per_thread) {
		struct cowtrace_process_slot *t = slot_owned(&thread_slots, p->thread_slot, p->tid);
		if (t) {
			ADD(t->counters.copies, -1);
			ADD(t->counters.file_copies, 1);
		}
	}
	p->resolved = COWTRACE_CLASS_FILE_COPY;
	emit(COWTRACE_EVENT_RESOLVE, COWTRACE_CLASS_FILE_COPY, p->tgid, p->tid, p->address, p->ip, 0);
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
