import CowTraceFormat
import CBPF
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What the running kernel offers cowtrace, read from /proc and /sys without
/// loading anything. `cowtrace doctor` prints it; the tier planner uses it.
public struct KernelFacts: Sendable {
    /// Where the kernel's BTF must be. COWTRACE_BTF_PATH overrides it, so the
    /// "kernel without BTF" error can be tested on a kernel that has it.
    public static let btfPath = Foundation.ProcessInfo.processInfo.environment["COWTRACE_BTF_PATH"] ?? "/sys/kernel/btf/vmlinux"

    public var release: String
    public var btfPresent: Bool
    public var lockdown: String
    public var kprobePMU: Bool
    public var bpffsMounted: Bool
    public var tracefsMounted: Bool
    public var euid: UInt32
    public var missingCapabilities: [String]
    public var unprivilegedBPFDisabled: String
    public var transparentHugepages: String
    public var overcommitMemory: String

    public static func read() -> KernelFacts {
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let mounts = readPseudoFile("/proc/mounts") ?? ""
        let mountTypes = Set(mounts.split(separator: "\n").compactMap { $0.split(separator: " ").dropFirst(2).first.map(String.init) })
        let lockdownRaw = readSysfs("/sys/kernel/security/lockdown")
        let lockdown = lockdownRaw.flatMap { raw in
            raw.split(separator: " ").first { $0.hasPrefix("[") }.map { String($0.dropFirst().dropLast()) }
        } ?? "unknown (securityfs not mounted)"
        return KernelFacts(
            release: release,
            btfPresent: FileManager.default.fileExists(atPath: btfPath),
            lockdown: lockdown,
            kprobePMU: FileManager.default.fileExists(atPath: "/sys/bus/event_source/devices/kprobe/type"),
            bpffsMounted: mountTypes.contains("bpf"),
            tracefsMounted: mountTypes.contains("tracefs"),
            euid: geteuid(),
            missingCapabilities: missingBPFCapabilities(),
            unprivilegedBPFDisabled: readSysfs("/proc/sys/kernel/unprivileged_bpf_disabled") ?? "unknown",
            transparentHugepages: readSysfs("/sys/kernel/mm/transparent_hugepage/enabled") ?? "unknown",
            overcommitMemory: readSysfs("/proc/sys/vm/overcommit_memory") ?? "unknown"
        )
    }

    /// CAP_BPF (39) and CAP_PERFMON (38) are what loading tracing programs
    /// needs (CAP_SYS_ADMIN also grants both).
    public static func missingBPFCapabilities() -> [String] {
        guard let status = readPseudoFile("/proc/self/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.split(separator: "\t").last.map(String.init) ?? "", radix: 16)
        else { return geteuid() == 0 ? [] : ["root"] }
        let has = { (bit: UInt64) in mask & (1 << bit) != 0 }
        if has(21) { return [] } // CAP_SYS_ADMIN
        var missing: [String] = []
        if !has(39) { missing.append("CAP_BPF") }
        if !has(38) { missing.append("CAP_PERFMON") }
        return missing
    }

    static func readSysfs(_ path: String) -> String? {
        readPseudoFile(path)?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// True if /proc/kallsyms lists a function of exactly this name.
    public static func kallsymsHas(_ symbol: String) -> Bool {
        kallsyms.contains(symbol)
    }

    /// Called once a tracer is loaded: drops what the tier checks cached (the
    /// kernel's symbols and BTF, several MiB; read again if asked again) and
    /// gives the freed heap back, so a long-running tracer does not keep it.
    static func releaseLoadMemory() {
        kallsymsCache = nil
        _ = cbpf_release_load_memory()
    }

    nonisolated(unsafe) private static var kallsymsCache: Set<String>?
    private static var kallsyms: Set<String> {
        if let cached = kallsymsCache { return cached }
        var names = Set<String>()
        if let text = readPseudoFile("/proc/kallsyms") {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ", maxSplits: 3)
                guard parts.count >= 3, parts[1] == "t" || parts[1] == "T" else { continue }
                names.insert(String(parts[2]))
            }
        }
        kallsymsCache = names
        return names
    }

    /// kernel.pid_max: the highest pid plus one (pid_slots is sized from it).
    /// Falls back to the 64-bit limit, 4194304, when it cannot be read.
    public static func pidMax() -> Int {
        readSysfs("/proc/sys/kernel/pid_max").flatMap { Int($0) }.map { max($0, 2) } ?? 4_194_304
    }

    /// True if the kernel's BTF describes a (non-inlined) function of this name.
    public static func btfHasFunction(_ name: String) -> Bool {
        cbpf_vmlinux_has_type(name, 12 /* BTF_KIND_FUNC */) == 1
    }
}
