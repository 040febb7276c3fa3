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
 * The kernel counts, into a slot per process (cowtrace_slots.bpf.h): user
 * space only reads and prints.
 *
 * One object, one load, one attach. This file holds the license and the
 * settings; the programs come from one header per concern, each using only
 * what the headers before it define (the slots call note_identity of the
 * processes ahead, by a declaration):
 *   cowtrace_maps.bpf.h          map helpers: loss counters, lookup-or-init
 *   cowtrace_slots.bpf.h         slots: where a process's (thread's) counters live
 *   cowtrace_record.bpf.h        recording: the ring buffer of events
 *   cowtrace_hist.bpf.h          histograms and copies per user stack
 *   cowtrace_lineage.bpf.h       lineage: a record per fork, its latency
 *   cowtrace_process.bpf.h       processes: identity, fork, exec, exit
 *   cowtrace_fault.bpf.h         what the two fault paths share
 *   cowtrace_fault_fentry.bpf.h  the fentry/kprobe fault path
 *   cowtrace_fault_tp.bpf.h      the tracepoint fault path */
#include "cowtrace_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "cowtrace.h"

char LICENSE[] SEC("license") = "GPL";

const volatile struct cowtrace_config cowtrace_cfg = {};

#include "cowtrace_maps.bpf.h"
#include "cowtrace_slots.bpf.h"
#include "cowtrace_record.bpf.h"
#include "cowtrace_hist.bpf.h"
#include "cowtrace_lineage.bpf.h"
#include "cowtrace_process.bpf.h"
#include "cowtrace_fault.bpf.h"
#include "cowtrace_fault_fentry.bpf.h"
#include "cowtrace_fault_tp.bpf.h"
