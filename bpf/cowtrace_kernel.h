/* cowtrace_kernel.h: the few kernel types cowtrace reads, written by hand.
 * preserve_access_index makes every field access a CO-RE relocation: libbpf
 * finds the field by name in the running kernel's BTF, so the layout written
 * here does not matter and the same object runs on 6.1 and 6.18. Fields that
 * sit inside anonymous structs or unions in the kernel (vm_fault.vma,
 * vm_area_struct.vm_flags since 6.3) are found there by name as well. */
#ifndef COWTRACE_KERNEL_H
#define COWTRACE_KERNEL_H

#include <linux/bpf.h>

/* Tell bpf_tracing.h to use the kernel's pt_regs field names (di, si, ...). */
#define __VMLINUX_H__ 1

typedef __u32 gfp_t;
typedef int pid_t;
typedef _Bool bool;
#define true 1
#define false 0

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)

struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

struct file;
struct address_space;

/* page->mapping has bit 0 set (PAGE_MAPPING_ANON) for anonymous pages. It is
 * declared as the kernel declares it (a pointer): CO-RE refuses to relocate a
 * field whose kind differs. */
struct page {
	struct address_space *mapping;
};

struct mm_struct {
	unsigned long total_vm;
	unsigned long start_brk;
	unsigned long brk;
	unsigned long start_stack;
};

typedef struct {
	int counter;
} atomic_t;

struct signal_struct; /* defined below, with the fields the OOM hooks read */

struct task_struct {
	unsigned int flags;
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct signal_struct *signal;
	struct mm_struct *mm;
	int exit_code;
	char comm[16];
	int pagefault_disabled; /* pagefault_disable(): a fault is not handled, only fixed up */
};

struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
	unsigned long vm_flags;
	struct file *vm_file;
	struct mm_struct *vm_mm;
};

/* include/linux/mm_types.h: bits 0 and 6 in 6.1 .. 6.18 */
enum fault_flag {
	FAULT_FLAG_WRITE = 1,
	FAULT_FLAG_USER = 1 << 6,   /* the fault came from user mode */
};

struct vm_fault {
	struct vm_area_struct *vma;
	unsigned long address;
	enum fault_flag flags;
	struct page *page;
};

/* 6.1 (SPLIT_RSS_COUNTING; 6.2's f1a7941243c1 removed it): a thread's own
 * faults count rss in task->rss_stat, folded into its mm every 64 events and
 * at exit, and rss_stat fires only then. The tracepoint tier reads the cache
 * to tell a file copy (see cowtrace_fault_tp.bpf.h). */
struct task_rss_stat___61 {
	int events;
	int count[4];
};
struct task_struct___61 {
	struct task_rss_stat___61 rss_stat;
};

#pragma clang attribute pop

/* include/linux/mm.h */
#define VM_SHARED   0x00000008UL
#define VM_MAYSHARE 0x00000080UL
/* include/linux/gfp_types.h: stable bit positions in 6.1 .. 6.18 */
#define COWTRACE_GFP_MOVABLE 0x08u
#define COWTRACE_GFP_ZERO    0x100u
/* __GFP_NORETRY (readahead's allocations): bit 16 in 6.1 and again from 6.10
 * (___GFP_UNUSED_BIT holds 9). 6.4 .. 6.9 have it at 0x8000, where 0x10000 is
 * __GFP_MEMALLOC, never in a fault's allocation: the test then does nothing. */
#define COWTRACE_GFP_NORETRY 0x10000u
/* include/linux/mm_types_task.h: enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES } */
#define COWTRACE_MM_FILEPAGES  0
#define COWTRACE_MM_SWAPENTS   2
#define COWTRACE_MM_SHMEMPAGES 3
/* include/linux/mm_types.h, enum vm_fault_reason (stable 6.1 .. 6.18): a fault
 * that returns any of these installed no page of its own. */
#define COWTRACE_VM_FAULT_NOT_DONE (0x000001 /* OOM */ | 0x000002 /* SIGBUS */ | 0x000010 /* HWPOISON */ | \
				    0x000020 /* HWPOISON_LARGE */ | 0x000040 /* SIGSEGV */ | 0x000100 /* NOPAGE */ | \
				    0x000400 /* RETRY */ | 0x000800 /* FALLBACK */)
/* arch/x86/include/asm/trap_pf.h */
#define X86_PF_PROT  0x1
#define X86_PF_WRITE 0x2
#define X86_PF_USER  0x4
#define PF_KTHREAD 0x00200000

/* ---- OOM kills (bpf/oom.bpf.c) ------------------------------------------
 * Types only oom.bpf.c reads. task_struct and mm_struct get ___oom flavours
 * (CO-RE drops the suffix) so the types above stay as they are. */
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)

struct oom_atomic_long { long counter; };          /* atomic_long_t */

/* 6.2+ (f1a7941243c1, "mm: convert mm's rss stats into percpu_counter"):
 * mm->rss_stat[] is an array of per-CPU counters. */
struct percpu_counter {
	long long count;
	int *counters;                              /* s32 __percpu * */
};
/* 6.1: one atomic per counter (plus per-task caches folded every 64 faults). */
struct mm_rss_stat {
	struct oom_atomic_long count[4];
};

struct mm_struct___oom {
	unsigned long total_vm;
	struct oom_atomic_long pgtables_bytes;
	struct percpu_counter rss_stat[4];
};
struct mm_struct___oom_61 {
	struct mm_rss_stat rss_stat;
};

/* 6.15 renamed kernfs_node.parent to __parent (RCU-protected). */
struct kernfs_node___oom {
	struct kernfs_node___oom *__parent;
	const char *name;
	__u64 id;
};
struct kernfs_node___oom_61 {
	struct kernfs_node___oom_61 *parent;
};

struct cgroup { struct kernfs_node___oom *kn; };
struct cgroup_subsys_state { struct cgroup *cgroup; };
struct mem_cgroup { struct cgroup_subsys_state css; };
struct css_set { struct cgroup_subsys_state *subsys[16]; };
struct signal_struct {
	atomic_t live;         /* threads still running; 0 once the last one is in do_exit */
	short oom_score_adj;
};
struct cred { struct { unsigned int val; } uid; };   /* kuid_t */

struct task_struct___oom {
	pid_t pid;
	pid_t tgid;
	struct mm_struct___oom *mm;
	struct signal_struct *signal;
	struct cred *cred;            /* const struct cred __rcu * */
	struct css_set *cgroups;
	char comm[16];
};

/* include/linux/bpf.h: a per-CPU array map's values, as __percpu pointers.
 * oom.bpf.c compares one with bpf_map_lookup_percpu_elem()'s address to learn
 * each CPU's per-CPU offset (kallsyms may not list this_cpu_off). */
struct bpf_array___oom {
	void *pptrs[1];
};

/* mm/oom_kill.c, include/linux/oom.h */
struct oom_control {
	struct mem_cgroup *memcg;
	unsigned long totalpages;
	struct task_struct___oom *chosen;
};

#pragma clang attribute pop

/* include/linux/cgroup_subsys.h: the value is taken from the kernel's BTF. */
enum cgroup_subsys_id { memory_cgrp_id = 4 };
/* include/linux/mm_types_task.h */
#define OOM_MM_FILEPAGES  0
#define OOM_MM_ANONPAGES  1
#define OOM_MM_SWAPENTS   2
#define OOM_MM_SHMEMPAGES 3

#endif
