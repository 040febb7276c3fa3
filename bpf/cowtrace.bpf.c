// SPDX-License-Identifier: GPL-2.0
/* cowtrace.bpf.c: counts write-protect faults per process and tells a copy
 * from a reuse, a zero-fill, a file copy and a shared write.
 *
 * Three variants of the fault-path hooks live in this one object; the loader
 * keeps the tier the running kernel allows and switches the others off before
 * load (libbpf-tools style):
 *   fentry:     do_wp_page, wp_page_copy, do_huge_pmd_wp_page
 *   kprobe:     the same functions
 *   tracepoint: tp_btf page_fault_user + mm_page_alloc + rss_stat
 * When wp_page_copy is inlined (6.18 x86), the fentry and kprobe tiers find the
 * copy by its page allocation between do_wp_page's entry and exit instead.
 *
 * The kernel counts (per-CPU hash, key tgid): user space only sums and prints. */
#include "cowtrace_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "cowtrace.h"

char LICENSE[] SEC("license") = "GPL";

const volatile struct cowtrace_config cowtrace_cfg = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cowtrace_pid_counters);
} pid_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct cowtrace_pid_info);
} pid_info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cowtrace_pending_fault);
} pending_fault SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COWTRACE_DROP_NR);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

static const struct cowtrace_pid_counters zero_counters;

static __always_inline void count_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &reason);
	if (n)
		(*n)++;
}

static __always_inline struct cowtrace_pid_counters *create_counters(__u32 tgid)
{
	long err = bpf_map_update_elem(&pid_counters, &tgid, &zero_counters, BPF_NOEXIST);
	if (err && err != -17 /* EEXIST: another CPU won the race */) {
		count_drop(COWTRACE_DROP_PID_MAP_FULL);
		return 0;
	}
	return bpf_map_lookup_elem(&pid_counters, &tgid);
}

/* The counters of a traced process, or NULL when tgid is not traced. */
static __always_inline struct cowtrace_pid_counters *traced_counters(__u32 tgid)
{
	struct cowtrace_pid_counters *c = bpf_map_lookup_elem(&pid_counters, &tgid);
	if (c || !cowtrace_cfg.trace_all)
		return c;
	return create_counters(tgid);
}

static __always_inline void emit(__u8 type, __u8 class_, __u32 tgid, __u32 tid,
				 __u64 address, __u64 ip, __u32 other_pid)
{
	if (!cowtrace_cfg.emit_events)
		return;
	struct cowtrace_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
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
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

static __always_inline struct cowtrace_pending_fault *pending(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&pending_fault, &zero);
}

/* ---- fentry and kprobe tiers ------------------------------------------ */

static __always_inline int on_do_wp_page(struct vm_fault *vmf)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct cowtrace_pid_counters *c = traced_counters(tgid);
	if (!c)
		return 0;

	struct vm_area_struct *vma = BPF_CORE_READ(vmf, vma);
	unsigned long vm_flags = BPF_CORE_READ(vma, vm_flags);
	__u64 address = BPF_CORE_READ(vmf, address);
	__u8 class_ = COWTRACE_CLASS_UNRESOLVED;

	c->wp_faults++;
	if (vm_flags & (VM_SHARED | VM_MAYSHARE)) {
		c->shared_writes++;
		class_ = COWTRACE_CLASS_SHARED_WRITE;
	} else if (cowtrace_cfg.copy_by_alloc) {
		struct cowtrace_pending_fault *p = pending();
		if (p) {
			p->tid = tid;
			p->tgid = tgid;
			p->ip = 0;
			p->address = address;
			p->resolved = COWTRACE_CLASS_UNRESOLVED;
		}
	}
	emit(COWTRACE_EVENT_WP_FAULT, class_, tgid, tid, address, 0, 0);
	return 0;
}

/* wp_page_copy runs for every copy, zero-page fill included: classify it here. */
static __always_inline int on_wp_page_copy(struct vm_fault *vmf)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct cowtrace_pid_counters *c = bpf_map_lookup_elem(&pid_counters, &tgid);
	if (!c)
		return 0;

	struct page *page = BPF_CORE_READ(vmf, page);
	struct vm_area_struct *vma = BPF_CORE_READ(vmf, vma);
	struct file *file = BPF_CORE_READ(vma, vm_file);
	__u8 class_;

	if (!page) {                       /* vm_normal_page() is NULL for the zero page */
		c->zero_fills++;
		class_ = COWTRACE_CLASS_ZERO_FILL;
	} else if (file && !((unsigned long)BPF_CORE_READ(page, mapping) & 1 /* PAGE_MAPPING_ANON */)) {
		c->file_copies++;
		class_ = COWTRACE_CLASS_FILE_COPY;
	} else {
		c->copies++;
		class_ = COWTRACE_CLASS_COPY;
	}
	emit(COWTRACE_EVENT_RESOLVE, class_, tgid, (__u32)id, BPF_CORE_READ(vmf, address), 0, 0);
	return 0;
}

static __always_inline int on_do_wp_page_return(void)
{
	struct cowtrace_pending_fault *p = pending();
	if (p && p->tid == (__u32)bpf_get_current_pid_tgid())
		p->tid = 0;
	return 0;
}

static __always_inline int on_huge_pmd_wp_page(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct cowtrace_pid_counters *c = bpf_map_lookup_elem(&pid_counters, &tgid);
	if (c)
		c->thp_wp_faults++;
	return 0;
}

SEC("fentry/do_wp_page")
int BPF_PROG(fentry_do_wp_page, struct vm_fault *vmf) { return on_do_wp_page(vmf); }

SEC("fexit/do_wp_page")
int BPF_PROG(fexit_do_wp_page, struct vm_fault *vmf, int ret) { return on_do_wp_page_return(); }

SEC("fentry/wp_page_copy")
int BPF_PROG(fentry_wp_page_copy, struct vm_fault *vmf) { return on_wp_page_copy(vmf); }

SEC("fentry/do_huge_pmd_wp_page")
int BPF_PROG(fentry_do_huge_pmd_wp_page, struct vm_fault *vmf) { return on_huge_pmd_wp_page(); }

SEC("kprobe/do_wp_page")
int BPF_KPROBE(kprobe_do_wp_page, struct vm_fault *vmf) { return on_do_wp_page(vmf); }

SEC("kretprobe/do_wp_page")
int BPF_KRETPROBE(kretprobe_do_wp_page) { return on_do_wp_page_return(); }

SEC("kprobe/wp_page_copy")
int BPF_KPROBE(kprobe_wp_page_copy, struct vm_fault *vmf) { return on_wp_page_copy(vmf); }

SEC("kprobe/do_huge_pmd_wp_page")
int BPF_KPROBE(kprobe_do_huge_pmd_wp_page) { return on_huge_pmd_wp_page(); }

/* ---- tracepoint tier ---------------------------------------------------- */

/* x86 error code: present + write = a write-protect fault. Remember it per CPU
 * with the user ip; the allocation that follows inside the same exception
 * (same thread, still in an exception at that ip) is the copy. */
SEC("tp_btf/page_fault_user")
int BPF_PROG(tp_page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	if ((error_code & (X86_PF_PROT | X86_PF_WRITE)) != (X86_PF_PROT | X86_PF_WRITE))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct cowtrace_pid_counters *c = traced_counters(tgid);
	if (!c)
		return 0;
	c->wp_faults++;

	struct cowtrace_pending_fault *p = pending();
	if (!p)
		return 0;
	__u64 ip = regs->ip;
	p->tid = tid;
	p->tgid = tgid;
	p->ip = ip;
	p->address = address;
	p->resolved = COWTRACE_CLASS_UNRESOLVED;
	emit(COWTRACE_EVENT_WP_FAULT, COWTRACE_CLASS_UNRESOLVED, tgid, tid, address, ip, 0);
	return 0;
}

/* True while current is still inside the user fault recorded in p. */
static __always_inline bool in_pending_fault(struct cowtrace_pending_fault *p)
{
	if (!p->tid || p->tid != (__u32)bpf_get_current_pid_tgid())
		return false;
	if (cowtrace_cfg.fault_mode != COWTRACE_MODE_TRACEPOINT)
		return true; /* fentry/kprobe: the window closes at do_wp_page's return */
	/* The user pt_regs show an exception (orig_ax == -1, a syscall would show
	 * its number) at the faulting ip: the fault has not returned yet. */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return regs->orig_ax == (unsigned long)-1 && regs->ip == p->ip;
}

SEC("tp_btf/mm_page_alloc")
int BPF_PROG(tp_mm_page_alloc, struct page *page, unsigned int order, gfp_t gfp_flags, int migratetype)
{
	if (order != 0 || !(gfp_flags & COWTRACE_GFP_MOVABLE))
		return 0;
	struct cowtrace_pending_fault *p = pending();
	if (!p || p->resolved != COWTRACE_CLASS_UNRESOLVED || !in_pending_fault(p))
		return 0;
	struct cowtrace_pid_counters *c = bpf_map_lookup_elem(&pid_counters, &p->tgid);
	if (!c)
		return 0;
	__u8 class_;
	if (gfp_flags & COWTRACE_GFP_ZERO) {
		c->zero_fills++;
		class_ = COWTRACE_CLASS_ZERO_FILL;
	} else {
		c->copies++;
		class_ = COWTRACE_CLASS_COPY;
	}
	p->resolved = class_;
	emit(COWTRACE_EVENT_RESOLVE, class_, p->tgid, p->tid, p->address, p->ip, 0);
	return 0;
}

/* wp_page_copy moves a MAP_PRIVATE file page's count from file (or shmem) to
 * anon: seen right after the copy's allocation, it makes that copy a file copy. */
SEC("tp_btf/rss_stat")
int BPF_PROG(tp_rss_stat, struct mm_struct *mm, int member)
{
	if (member != COWTRACE_MM_FILEPAGES && member != COWTRACE_MM_SHMEMPAGES)
		return 0;
	struct cowtrace_pending_fault *p = pending();
	if (!p || p->resolved != COWTRACE_CLASS_COPY || !in_pending_fault(p))
		return 0;
	struct cowtrace_pid_counters *c = bpf_map_lookup_elem(&pid_counters, &p->tgid);
	if (!c)
		return 0;
	c->copies--;
	c->file_copies++;
	p->resolved = COWTRACE_CLASS_FILE_COPY;
	emit(COWTRACE_EVENT_RESOLVE, COWTRACE_CLASS_FILE_COPY, p->tgid, p->tid, p->address, p->ip, 0);
	return 0;
}

/* ---- processes: fork, exec, exit (tp_btf on every tier) --------------- */

static __always_inline void note_identity(__u32 tgid, __u32 ppid, struct task_struct *task, bool at_fork)
{
	struct cowtrace_pid_info *info = bpf_map_lookup_elem(&pid_info, &tgid);
	if (!info) {
		struct cowtrace_pid_info fresh = {};
		fresh.ppid = ppid;
		if (bpf_map_update_elem(&pid_info, &tgid, &fresh, BPF_NOEXIST) && !bpf_map_lookup_elem(&pid_info, &tgid)) {
			count_drop(COWTRACE_DROP_INFO_MAP_FULL);
			return;
		}
		info = bpf_map_lookup_elem(&pid_info, &tgid);
		if (!info)
			return;
	}
	if (at_fork) {
		info->ppid = ppid;
		info->start_ns = bpf_ktime_get_ns();
	}
	BPF_CORE_READ_STR_INTO(&info->comm, task, comm);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tp_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = parent->tgid, child_tgid = child->tgid;
	if (parent_tgid == child_tgid)
		return 0; /* a new thread, not a process */
	struct cowtrace_pid_counters *pc = traced_counters(parent_tgid);
	bool spawned = cowtrace_cfg.spawner_tgid && parent_tgid == cowtrace_cfg.spawner_tgid;
	if (!pc && !spawned)
		return 0;
	if (pc)
		pc->forks++;
	if (!traced_counters(child_tgid) && !create_counters(child_tgid))
		return 0;
	note_identity(child_tgid, parent_tgid, child, true);
	emit(COWTRACE_EVENT_FORK, 0, parent_tgid, (__u32)bpf_get_current_pid_tgid(), 0, 0, child_tgid);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tp_sched_process_exec, struct task_struct *p, pid_t old_pid, void *bprm)
{
	__u32 tgid = p->tgid;
	struct cowtrace_pid_counters *c = traced_counters(tgid);
	if (!c)
		return 0;
	c->execs++;
	note_identity(tgid, BPF_CORE_READ(p, real_parent, tgid), p, false);
	emit(COWTRACE_EVENT_EXEC, 0, tgid, p->pid, 0, 0, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tp_sched_process_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;
	if (p->pid != p->tgid)
		return 0; /* a thread; the process ends with its leader */
	if (!bpf_map_lookup_elem(&pid_counters, &tgid))
		return 0;
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
