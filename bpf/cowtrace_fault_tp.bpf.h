/* cowtrace_fault_tp.bpf.h: the tracepoint fault path: tp_btf page_fault_user
 * remembers a write fault, the order-0 movable allocation that follows in
 * the same exception (mm_page_alloc) is its copy, and rss_stat tells a file
 * copy from an anonymous one. Kernels that allow no fentry or kprobe (6.18
 * here) take this path. */
#ifndef COWTRACE_FAULT_TP_BPF_H
#define COWTRACE_FAULT_TP_BPF_H

/* A no-op cast the verifier inlines (6.2+); weak, so that kernels without it
 * load the object and take bpf_task_pt_regs instead. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) (!!(sym))
#endif

/* The ip a fault's events carry: the user's; for a kernel-mode fault (regs are
 * the kernel's exception frame), where the thread's syscall was made. */
static __always_inline __u64 fault_event_ip(struct task_struct *task, struct pt_regs *regs, bool kernel)
{
	return kernel ? ((struct pt_regs *)bpf_task_pt_regs(task))->ip : regs->ip;
}

struct find_vma_ctx {
	__u32 tgid;
	__u32 kind;     /* out: enum cowtrace_vma_kind (recording) */
	__u64 address;
	__u8  histogram;
	__u8  only_file_private; /* the offset histogram only if the VMA is a private file mapping */
	__u8  pad[6];
};

static long vma_found(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct find_vma_ctx *f = data;
	f->kind = vma_kind(vma);
	if (f->histogram && (!f->only_file_private || f->kind == COWTRACE_VMA_FILE_PRIVATE))
		offset_add(f->tgid, vma, f->address);
	return 0;
}

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
				 struct pt_regs *regs, unsigned long address, bool not_present, bool kernel)
{
	p->tid = task->pid;
	p->tgid = task->tgid;
	p->slot = slot;
	p->fault_regs = (__u64)regs;
	p->thread_slot = 0;
	p->ip = regs->ip;
	p->address = address;
	p->resolved = COWTRACE_CLASS_UNRESOLVED;
	p->not_present = not_present;
	p->split_rss = 0;
	p->kernel_mode = kernel;
	p->event_ns = 0;
}

/* The fault's event: now, remembered for its resolves (RESOLVE_TS). */
static __always_inline __u64 fault_event_time(struct cowtrace_pending_fault *p)
{
	p->event_ns = bpf_ktime_get_ns();
	return p->event_ns;
}

/* A resolve's time: 1 ns after its fault's event (so it sorts after it even
 * when the thread moved to another CPU in between), read from the clock only
 * when the fault sent no event of its own (tp_first_touch did). */
#define RESOLVE_TS(p) ((p)->event_ns ? (p)->event_ns + 1 : 0)

/* A resolve's ip: the fault's user ip; none for a kernel-mode fault (p->ip is
 * the kernel's, kept only to match the allocation), as on the fentry tiers. */
static __always_inline __u64 resolve_ip(struct cowtrace_pending_fault *p)
{
	return p->kernel_mode ? 0 : p->ip;
}

/* 6.1 counts a thread's own faults' rss in task->rss_stat (SPLIT_RSS_COUNTING)
 * and fires rss_stat only when it folds that cache into the mm, so a copy's
 * file-to-anon move is not seen during its fault. The copy's allocation saves
 * the cache (split_rss); the thread's next fault, or the fold, compares: one
 * file (or shmem) page fewer is a file copy. Nothing but the thread's own
 * faults changes its cache in between. A constant per kernel: the verifier
 * drops this code where the field does not exist (6.2+). */
static __always_inline bool split_rss_counting(void)
{
	return bpf_core_field_exists(struct task_struct___61, rss_stat);
}

static __always_inline void split_rss_save(struct cowtrace_pending_fault *p, struct task_struct *task)
{
	struct task_struct___61 *t = (void *)task;
	p->file_rss = BPF_CORE_READ(t, rss_stat.count[COWTRACE_MM_FILEPAGES]);
	p->shmem_rss = BPF_CORE_READ(t, rss_stat.count[COWTRACE_MM_SHMEMPAGES]);
	p->split_rss = 1;
}

static __always_inline int copy_was_file_copy(struct cowtrace_pending_fault *p);

static __always_inline void split_rss_resolve(struct cowtrace_pending_fault *p, struct task_struct *task)
{
	struct task_struct___61 *t = (void *)task;
	p->split_rss = 0;
	if (p->resolved != COWTRACE_CLASS_COPY)
		return;
	if (BPF_CORE_READ(t, rss_stat.count[COWTRACE_MM_FILEPAGES]) == p->file_rss - 1 ||
	    BPF_CORE_READ(t, rss_stat.count[COWTRACE_MM_SHMEMPAGES]) == p->shmem_rss - 1)
		copy_was_file_copy(p);
}

/* x86 error code: present + write = a write-protect fault. Remember it per CPU
 * with the fault's ip; the allocation that follows inside the same exception
 * (same thread, still in an exception at that ip) is the copy.
 * Not present + write (0x6) is remembered too, uncounted: in a MAP_PRIVATE file
 * mapping do_cow_fault copies the page-cache page into a new page, and that
 * allocation (see tp_mm_page_alloc) makes it a file copy.
 * `kernel`: the kernel's own write to user memory (page_fault_kernel): regs are
 * its exception frame, and the recorded ip is the user one (the syscall's). */
static __always_inline int on_page_fault(unsigned long address, struct pt_regs *regs, unsigned long error_code,
					 bool kernel)
{
	if (!(error_code & X86_PF_WRITE)) {
		/* Any other fault of the thread ends its pending one: a first
		 * touch at the same ip after a reuse must not pass for its copy. */
		struct cowtrace_pending_fault *p = pending();
		if (p && p->tid && p->tid == (__u32)bpf_get_current_pid_tgid()) {
			if (split_rss_counting() && p->split_rss)
				split_rss_resolve(p, bpf_get_current_task_btf());
			p->tid = 0;
		}
		if ((cowtrace_cfg.record_faults & COWTRACE_RECORD_IN_FAULT_HOOK) && !(error_code & X86_PF_PROT)) {
			struct task_struct *task = bpf_get_current_task_btf();
			if (counters_of(task))
				emit_first_touch(0, task, address, fault_event_ip(task, regs, kernel), error_code);
		}
		return 0;
	}
	struct cowtrace_pending_fault *p = pending();
	if (!p)
		return 0;
	/* One task pointer serves the filter, the ids and the counters: every
	 * helper call costs on this path. */
	struct task_struct *task = bpf_get_current_task_btf();
	if (split_rss_counting() && p->split_rss && p->tid == task->pid)
		split_rss_resolve(p, task);
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
		pend(p, task, slot, regs, address, true, kernel);
		if (cowtrace_cfg.record_faults & COWTRACE_RECORD_IN_FAULT_HOOK)
			emit_first_touch(fault_event_time(p), task, address, fault_event_ip(task, regs, kernel), error_code);
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
	pend(p, task, slot, regs, address, false, kernel);
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
	 * be read), so for recordings the lookup stops after 256 faults. It
	 * costs 1-6 µs: its mmap_lock unlock goes through irq_work, IRQs being
	 * off (on the storm, 8 children x 256 lookups are 20 ns of every fault).
	 * Forked children look up too, although the model has their parent's
	 * mappings: skipping it let the child of fork-exec reach a page both
	 * write before the parent, unlike their fault records' order. */
	struct find_vma_ctx f = { .tgid = tgid, .address = address, .histogram = cowtrace_cfg.mapping_histograms };
	bool lookup = cowtrace_cfg.mapping_histograms || ((cowtrace_cfg.record_faults & COWTRACE_RECORD_FAULTS) && c->wp_faults <= 256);
	if (lookup && bpf_find_vma(task, address, vma_found, &f, 0))
		count_drop(COWTRACE_DROP_VMA_BUSY);
	emit_at(cowtrace_cfg.emit_events ? fault_event_time(p) : 0, COWTRACE_EVENT_WP_FAULT, COWTRACE_CLASS_UNRESOLVED, tgid, tid, address,
		fault_event_ip(task, regs, kernel), (__u32)(error_code & 0xff) | f.kind << 8);
	return 0;
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(tp_page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	return on_page_fault(address, regs, error_code, false);
}

/* The kernel writing user memory: copy_to_user in read(), recv(), a pipe, the
 * ELF loader clearing .bss at exec. A fork's shared page is copied there just
 * as by the program's own store, with no page_fault_user. Faults on kernel
 * addresses, and those the kernel only fixes up (pagefault_disable(): it
 * copies with faults off and falls back), are not the program's. The
 * fentry/kprobe tiers see these in do_wp_page (do_cow_fault) already.
 * Not seen on any tier's tracepoints: a write through get_user_pages
 * (O_DIRECT reads, process_vm_writev, ptrace), which takes no page fault.
 * Counted as on user faults although the kernel then fails it (EFAULT, where
 * a user fault would be a SIGSEGV): a write into a read-only mapping, a reuse
 * here; and copies in atomic context (in_atomic() without
 * pagefault_disable(), e.g. __copy_from_user_inatomic under a page-table
 * lock), reads that only end the thread's pending fault. */
SEC("tp_btf/page_fault_kernel")
int BPF_PROG(tp_page_fault_kernel, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	if ((long)address < 0)
		return 0; /* a kernel address */
	if (bpf_get_current_task_btf()->pagefault_disabled)
		return 0;
	return on_page_fault(address, regs, error_code, true);
}

/* True while `task` is still inside the fault recorded in p. */
static __always_inline bool in_pending_fault(struct cowtrace_pending_fault *p, struct task_struct *task)
{
	if (!p->tid || p->tid != task->pid)
		return false;
	if (cowtrace_cfg.fault_mode != COWTRACE_MODE_TRACEPOINT && !p->not_present)
		return true; /* fentry/kprobe: the window closes at do_wp_page's return */
	/* The fault's pt_regs show an exception (orig_ax == -1, a syscall would
	 * show its number) at the faulting ip: the fault has not returned yet. */
	if (p->kernel_mode) {
		/* The kernel's exception frame, on the thread's stack, read as
		 * memory. It is left there when the fault returns, but the calls
		 * that lead to any later allocation in the same syscall write over
		 * it (and readahead's, the likeliest, are told by their gfp: see
		 * tp_mm_page_alloc); the thread's next fault replaces p. */
		struct pt_regs *frame = (struct pt_regs *)p->fault_regs;
		return BPF_CORE_READ(frame, orig_ax) == (unsigned long)-1 && BPF_CORE_READ(frame, ip) == p->ip;
	}
	struct pt_regs *regs;
	if (bpf_ksym_exists(bpf_rdonly_cast))
		/* The pt_regs page_fault_user was given, read without a helper
		 * call (bpf_task_pt_regs costs ~40 ns here): p->tid is this
		 * thread, so they are its user registers. */
		regs = bpf_rdonly_cast((void *)p->fault_regs, bpf_core_type_id_kernel(struct pt_regs));
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
	emit_at(RESOLVE_TS(p), COWTRACE_EVENT_RESOLVE, COWTRACE_CLASS_FILE_COPY, p->tgid, p->tid, p->address, resolve_ip(p), 0);
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
	/* Readahead (__GFP_NORETRY) inside the syscall of a kernel-mode fault
	 * is the page cache's, never the fault's copy. */
	if (p->kernel_mode && (gfp_flags & COWTRACE_GFP_NORETRY))
		return 0;
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
		if (split_rss_counting())
			split_rss_save(p, task);
	}
	if (cowtrace_cfg.per_thread) {
		struct cowtrace_process_slot *t = slot_owned(&thread_slots, p->thread_slot, p->tid);
		if (t)
			add_class(&t->counters, class_);
	}
	p->resolved = class_;
	emit_at(RESOLVE_TS(p), COWTRACE_EVENT_RESOLVE, class_, p->tgid, p->tid, p->address, resolve_ip(p), 0);
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
	emit_at(RESOLVE_TS(p), COWTRACE_EVENT_RESOLVE, COWTRACE_CLASS_UNRESOLVED, p->tgid, p->tid, p->address, resolve_ip(p), 0);
	return 0;
}

/* The copy just counted for p was of a MAP_PRIVATE file (or shmem) page after all. */
static __always_inline int copy_was_file_copy(struct cowtrace_pending_fault *p)
{
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
	emit_at(RESOLVE_TS(p), COWTRACE_EVENT_RESOLVE, COWTRACE_CLASS_FILE_COPY, p->tgid, p->tid, p->address, resolve_ip(p), 0);
	return 0;
}

/* wp_page_copy moves a MAP_PRIVATE file page's count from file (or shmem) to
 * anon: seen right after the copy's allocation, it makes that copy a file copy.
 * A drop of the swap count undoes a not-present write's file copy (above).
 * On 6.1 this fires when a thread's rss cache is folded into its mm (every 64
 * events, and at exit), each count before it is cleared: a copy still waiting
 * for its class (split_rss) gets it here. */
SEC("tp_btf/rss_stat")
int BPF_PROG(tp_rss_stat, struct mm_struct *mm, int member)
{
	if (split_rss_counting()) {
		struct cowtrace_pending_fault *p = pending();
		if (p && p->split_rss && p->tid == (__u32)bpf_get_current_pid_tgid())
			split_rss_resolve(p, bpf_get_current_task_btf());
		return 0;
	}
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
	return copy_was_file_copy(p);
}

#endif
