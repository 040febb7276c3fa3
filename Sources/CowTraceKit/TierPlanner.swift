/// The kernel facts that decide a tier's programs. `LiveKernel` reads them;
/// tests pass other kernels.
public protocol KernelSymbols {
    /// A (non-inlined) function the kernel's BTF describes: fentry can attach.
    func btfHasFunction(_ name: String) -> Bool
    /// A function /proc/kallsyms lists: kprobes can attach.
    func kallsymsHas(_ name: String) -> Bool
    /// The kprobe PMU exists (CONFIG_KPROBES).
    var hasKprobePMU: Bool { get }
}

public struct LiveKernel: KernelSymbols {
    public init() {}
    public func btfHasFunction(_ name: String) -> Bool { KernelFacts.btfHasFunction(name) }
    public func kallsymsHas(_ name: String) -> Bool { KernelFacts.kallsymsHas(name) }
    public var hasKprobePMU: Bool { KernelFacts.read().kprobePMU }
}

/// Decides, from BTF and kallsyms, which programs a tier needs on this kernel,
/// before anything is loaded.
public enum TierPlanner {
    public struct Unavailable: Error, CustomStringConvertible {
        public let description: String
    }

    public static func plan(_ tier: AttachTier, kernel: KernelSymbols = LiveKernel()) -> Result<TierPlan, Unavailable> {
        switch tier {
        case .fentry:
            guard kernel.btfHasFunction("do_wp_page") else {
                return .failure(Unavailable(description: "do_wp_page is not a function in the kernel's BTF, so fentry cannot attach to it"))
            }
            var programs = ["fentry_do_wp_page"]
            let copyByAlloc = !kernel.btfHasFunction("wp_page_copy")
            programs += copyByAlloc
                ? ["fexit_do_wp_page", "tp_mm_page_alloc", "tp_rss_stat"]
                : ["fentry_wp_page_copy"]
            if kernel.btfHasFunction("do_huge_pmd_wp_page") { programs.append("fentry_do_huge_pmd_wp_page") }
            programs = adding(cowFaultPrograms(entry: "fentry", exit: "fexit", has: kernel.btfHasFunction), to: programs)
            return .success(TierPlan(tier: .fentry, faultPrograms: programs, copyByAlloc: copyByAlloc))
        case .kprobe:
            guard kernel.hasKprobePMU else {
                return .failure(Unavailable(description: "the kernel has no kprobe PMU (/sys/bus/event_source/devices/kprobe is missing: built without CONFIG_KPROBES)"))
            }
            guard kernel.kallsymsHas("do_wp_page") else {
                return .failure(Unavailable(description: "do_wp_page is not in /proc/kallsyms (inlined, or kallsyms is hidden: run as root)"))
            }
            var programs = ["kprobe_do_wp_page"]
            let copyByAlloc = !kernel.kallsymsHas("wp_page_copy")
            programs += copyByAlloc
                ? ["kretprobe_do_wp_page", "tp_mm_page_alloc", "tp_rss_stat"]
                : ["kprobe_wp_page_copy"]
            if kernel.kallsymsHas("do_huge_pmd_wp_page") { programs.append("kprobe_do_huge_pmd_wp_page") }
            programs = adding(cowFaultPrograms(entry: "kprobe", exit: "kretprobe", has: kernel.kallsymsHas), to: programs)
            return .success(TierPlan(tier: .kprobe, faultPrograms: programs, copyByAlloc: copyByAlloc))
        case .tracepoint:
            return .success(TierPlan(tier: .tracepoint, faultPrograms: faultTracepointPrograms, copyByAlloc: true))
        }
    }

    /// The not-present write of a MAP_PRIVATE file page copies it in
    /// do_cow_fault, outside do_wp_page. Hooked there; where it is inlined
    /// (Debian 6.1), in do_fault, its only caller, filtered to the private
    /// write; where both are inlined, found as the tracepoint tier finds it:
    /// a not-present write fault, then the new page's allocation.
    static func cowFaultPrograms(entry: String, exit: String, has: (String) -> Bool) -> [String] {
        for function in ["do_cow_fault", "do_fault"] where has(function) {
            return ["\(entry)_\(function)", "\(exit)_\(function)"]
        }
        return faultTracepointPrograms
    }

    /// The tracepoint tier's fault programs: the program's own faults, the
    /// kernel's writes into user memory (read() into a page a fork shares
    /// copies it in a kernel-mode fault), the allocation that is a copy, and
    /// the rss move that makes it a file copy.
    static let faultTracepointPrograms = ["tp_page_fault_user", "tp_page_fault_kernel", "tp_mm_page_alloc", "tp_rss_stat"]

    private static func adding(_ more: [String], to programs: [String]) -> [String] {
        programs + more.filter { !programs.contains($0) }
    }

    /// Every program the embedded object holds (no privileges needed).
    public static func embeddedProgramNames() throws -> [String] {
        try BPFObject(bytes: EmbeddedBPF.cowtrace, name: "cowtrace").programNames
    }
}
