// SPDX-License-Identifier: GPL-2.0
/* bench_floor.bpf.c: empty programs on the tracepoint tier's hooks. Attached
 * by `cowtrace bench-floor`, they measure what merely running a BPF program on
 * each event costs this kernel: the floor cowtrace's overhead is judged by. */
#include "cowtrace_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/page_fault_user")
int BPF_PROG(floor_page_fault_user) { return 0; }

SEC("tp_btf/mm_page_alloc")
int BPF_PROG(floor_mm_page_alloc) { return 0; }

SEC("tp_btf/rss_stat")
int BPF_PROG(floor_rss_stat) { return 0; }

SEC("tp_btf/sched_process_fork")
int BPF_PROG(floor_sched_process_fork) { return 0; }

SEC("tp_btf/sched_process_exec")
int BPF_PROG(floor_sched_process_exec) { return 0; }

SEC("tp_btf/sched_process_exit")
int BPF_PROG(floor_sched_process_exit) { return 0; }
