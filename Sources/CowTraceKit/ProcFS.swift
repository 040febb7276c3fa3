import CowTraceFormat
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The few /proc reads cowtrace needs about a process.
public enum ProcFS {
    public static func comm(of pid: Int32) -> String? {
        readPseudoFile("/proc/\(pid)/comm")?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public static func parentPID(of pid: Int32) -> Int32? {
        guard let fields = readPseudoFile("/proc/\(pid)/stat").flatMap(statFields) else { return nil }
        return fields.count > 1 ? Int32(fields[1]) : nil
    }

    /// The fields of /proc/PID/stat after the command name: "pid (comm) state
    /// ppid ...", where comm may hold spaces and parentheses. [0] is the state
    /// (field 3 of proc(5)): field n is [n - 3]. nil without a closing parenthesis.
    public static func statFields(_ text: String) -> [Substring]? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    /// The task flags of /proc/PID/stat (field 9), e.g. PF_EXITING.
    public static func flags(procStat text: String) -> UInt64? {
        guard let fields = statFields(text), fields.count > 6 else { return nil }
        return UInt64(fields[6])
    }

    /// The kernel's PF_EXITING task flag (include/linux/sched.h): set from the
    /// start of do_exit, and on a zombie.
    public static let pfExiting: UInt64 = 0x4

    /// Whether `pid` is exiting or a zombie (or gone: nothing says otherwise).
    public static func isExiting(_ pid: Int32) -> Bool {
        guard let flags = readPseudoFile("/proc/\(pid)/stat").flatMap(flags(procStat:)) else { return true }
        return flags & pfExiting != 0
    }

    /// The tids of a process's live threads (/proc/PID/task), empty if it is gone.
    public static func threads(of pid: Int32) -> [Int32] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return [] }
        return names.compactMap { Int32($0) }.sorted()
    }

    /// A thread's current name.
    public static func threadComm(pid: Int32, tid: Int32) -> String? {
        readPseudoFile("/proc/\(pid)/task/\(tid)/comm")?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}


