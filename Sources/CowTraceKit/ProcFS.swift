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
        guard let stat = readPseudoFile("/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: ")") else { return nil }
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
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


