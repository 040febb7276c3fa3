/* cowtrace_fault_fentry.bpf.h: the fentry/kprobe fault path: do_wp_page,
 * wp_page_copy, do_huge_pmd_wp_page and do_cow_fault (or do_fault), hooked
 * by fentry/fexit or kprobe/kretprobe with the same handlers. */
#ifndef COWTRACE_FAULT_FENTRY_BPF_H
#define COWTRACE_FAULT_FENTRY_BPF_H

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
			p->event_ns = 0; /* the allocation's resolve reads the clock */
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
	p->kernel_mode = !(BPF_CORE_READ(vmf, flags) & FAULT_FLAG_USER);
	p->start_ns = cowtrace_cfg.histograms ? bpf_ktime_get_ns() : 0;
	p->event_ns = 0;
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
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	/* A copy the kernel made writing into user memory (a read() into the
	 * page, the ELF loader zeroing the end of .data at exec) has no user
	 * fault, so no first-touch event to resolve: one is recorded here, as a
	 * kernel-mode write (x86 error code 0x2), so that the recording's file
	 * copies add up to the counters. */
	if (p->kernel_mode && (cowtrace_cfg.record_faults & COWTRACE_RECORD_FAULTS))
		emit(COWTRACE_EVENT_FIRST_TOUCH, 0, p->tgid, tid, p->address, 0, X86_PF_WRITE);
	emit(COWTRACE_EVENT_RESOLVE, COWTRACE_CLASS_FILE_COPY, p->tgid, tid, p->address, 0, 0);
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

#endif
