import CBPF
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What the kernel counted of one loaded BPF program (struct bpf_prog_info's
/// run_cnt and run_time_ns): how often it ran and for how long. The kernel
/// counts only while kernel.bpf_stats_enabled is 1 (or someone holds a
/// BPF_ENABLE_STATS fd); otherwise the figures stay where they were.
public struct BPFProgramStatistics: Equatable, Sendable {
    /// The program's name in the object (libbpf's; the kernel keeps 15 characters).
    public var name: String
    /// The kernel's program id (`bpftool prog show id ID`).
    public var id: UInt32
    public var runs: UInt64
    public var runNanoseconds: UInt64

    public init(name: String, id: UInt32, runs: UInt64, runNanoseconds: UInt64) {
        self.name = name
        self.id = id
        self.runs = runs
        self.runNanoseconds = runNanoseconds
    }

    /// The kernel's figures of a loaded program's fd, or nil (fd closed).
    static func read(name: String, fd: Int32) -> BPFProgramStatistics? {
        guard fd >= 0 else { return nil }
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        guard bpf_obj_get_info_by_fd(fd, &info, &length) == 0 else { return nil }
        return BPFProgramStatistics(name: name, id: info.id, runs: info.run_cnt, runNanoseconds: info.run_time_ns)
    }
}

extension KernelFacts {
    public static let bpfStatsPath = "/proc/sys/kernel/bpf_stats_enabled"

    /// kernel.bpf_stats_enabled: whether the kernel counts every BPF
    /// program's runs and run time (about 20 ns per run); nil if unreadable.
    public static func bpfStatsEnabled() -> Bool? {
        readSysfs(bpfStatsPath).flatMap(Int.init).map { $0 != 0 }
    }

    /// How to turn the statistics on, for HELP texts and warnings.
    public static let bpfStatsHowToEnable = "sysctl kernel.bpf_stats_enabled=1 (costs about 20 ns per program run)"
}

extension BPFObject {
    /// The statistics of these programs, in that order (those still loaded).
    func statistics(of names: [String]) -> [BPFProgramStatistics] {
        guard !isClosed else { return [] }
        return names.compactMap { name in
            guard let p = bpf_object__find_program_by_name(handle, name) else { return nil }
            return BPFProgramStatistics.read(name: name, fd: bpf_program__fd(p))
        }
    }
}
