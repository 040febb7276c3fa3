/// Decides, from BTF and kallsyms, which programs a tier needs on this kernel,
/// before anything is loaded.
enum TierPlanner {
    struct Unavailable: Error, CustomStringConvertible {
        let description: String
    }

    static func plan(_ tier: AttachTier) -> Result<TierPlan, Unavailable> {
        switch tier {
        case .fentry:
            guard KernelFacts.btfHasFunction("do_wp_page") else {
                return .failure(Unavailable(description: "do_wp_page is not a function in the kernel's BTF, so fentry cannot attach to it"))
            }
            var programs = ["fentry_do_wp_page"]
            let copyByAlloc = !KernelFacts.btfHasFunction("wp_page_copy")
            programs += copyByAlloc
                ? ["fexit_do_wp_page", "tp_mm_page_alloc", "tp_rss_stat"]
                : ["fentry_wp_page_copy"]
            if KernelFacts.btfHasFunction("do_huge_pmd_wp_page") { programs.append("fentry_do_huge_pmd_wp_page") }
            return .success(TierPlan(tier: .fentry, faultPrograms: programs, copyByAlloc: copyByAlloc))
        case .kprobe:
            guard KernelFacts.read().kprobePMU else {
                return .failure(Unavailable(description: "the kernel has no kprobe PMU (/sys/bus/event_source/devices/kprobe is missing: built without CONFIG_KPROBES)"))
            }
            guard KernelFacts.kallsymsHas("do_wp_page") else {
                return .failure(Unavailable(description: "do_wp_page is not in /proc/kallsyms (inlined, or kallsyms is hidden: run as root)"))
            }
            var programs = ["kprobe_do_wp_page"]
            let copyByAlloc = !KernelFacts.kallsymsHas("wp_page_copy")
            programs += copyByAlloc
                ? ["kretprobe_do_wp_page", "tp_mm_page_alloc", "tp_rss_stat"]
                : ["kprobe_wp_page_copy"]
            if KernelFacts.kallsymsHas("do_huge_pmd_wp_page") { programs.append("kprobe_do_huge_pmd_wp_page") }
            return .success(TierPlan(tier: .kprobe, faultPrograms: programs, copyByAlloc: copyByAlloc))
        case .tracepoint:
            return .success(TierPlan(tier: .tracepoint, faultPrograms: ["tp_page_fault_user", "tp_mm_page_alloc", "tp_rss_stat"], copyByAlloc: true))
        }
    }
}
