import CBPF

/// How the fault-path programs reach the kernel, best first.
public enum AttachTier: String, CaseIterable, Sendable, CustomStringConvertible {
    /// fentry/fexit on do_wp_page and wp_page_copy: BTF trampolines, the cheapest probes.
    case fentry
    /// kprobe/kretprobe on the same functions: needs CONFIG_KPROBES.
    case kprobe
    /// BTF tracepoints page_fault_user + mm_page_alloc + rss_stat (x86): always there with BTF.
    case tracepoint

    public var description: String { rawValue }

    /// The tier sees do_wp_page return, so it can time copies (copy-latency histogram).
    public var seesFaultReturn: Bool { self != .tracepoint }

    /// The fault classes this tier tells apart, for `doctor` and the docs.
    public func separatedClasses(copyByAlloc: Bool) -> [String] {
        switch self {
        case .fentry, .kprobe:
            return ["copy", "reuse", "zero-fill", "file-copy", "shared-write"]
        case .tracepoint:
            return ["copy", "zero-fill", "file-copy", "reuse (shared writes included: no VMA is read)"]
        }
    }
}

/// One tier's programs for this kernel, decided before load.
public struct TierPlan: Sendable, Equatable {
    public let tier: AttachTier
    public let faultPrograms: [String]
    /// wp_page_copy is not a symbol (inlined): the copy is found by its page allocation.
    public let copyByAlloc: Bool
    var mode: UInt8 {
        switch tier {
        case .fentry: return UInt8(COWTRACE_MODE_FENTRY.rawValue)
        case .kprobe: return UInt8(COWTRACE_MODE_KPROBE.rawValue)
        case .tracepoint: return UInt8(COWTRACE_MODE_TRACEPOINT.rawValue)
        }
    }

    public static let processPrograms = ["tp_sched_process_fork", "tp_sched_process_exec", "tp_sched_process_exit"]
    /// Only with fork lineage: the fork-family syscalls' entry and exit, for latency.
    public static let lineagePrograms = ["tp_sys_enter_fork", "tp_sys_exit_fork"]

    /// Only when recording: the address-space syscalls, and the first-touch
    /// faults where the plan does not attach tp_page_fault_user anyway (which
    /// then emits them itself: one program per fault instead of two).
    public var recordPrograms: [String] {
        firstTouchesInFaultHook ? ["tp_sys_exit_vm"] : ["tp_first_touch", "tp_sys_exit_vm"]
    }

    /// tp_page_fault_user is attached: a recording's first touches come from it.
    var firstTouchesInFaultHook: Bool { faultPrograms.contains("tp_page_fault_user") }

    /// cowtrace_config.record_faults for a recording (enum cowtrace_record_faults):
    /// fault events always go through the per-CPU batches.
    var recordFaults: UInt8 {
        UInt8(COWTRACE_RECORD_FAULTS.rawValue | COWTRACE_RECORD_BATCHED.rawValue
              | (firstTouchesInFaultHook ? COWTRACE_RECORD_IN_FAULT_HOOK.rawValue : 0))
    }

    public var allPrograms: [String] { faultPrograms + TierPlan.processPrograms }

    /// The program that sees do_wp_page return on this tier (copy latency), if any.
    public var faultReturnProgram: String? {
        switch tier {
        case .fentry: return "fexit_do_wp_page"
        case .kprobe: return "kretprobe_do_wp_page"
        case .tracepoint: return nil
        }
    }

}

/// The outcome of trying one tier, kept for `doctor` and error messages.
public struct TierAttempt: Sendable {
    public let tier: AttachTier
    /// nil when the tier attached.
    public let failure: String?
    public let programs: [String]
    public let copyByAlloc: Bool
}
