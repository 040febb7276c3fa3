import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The few /proc reads cowtrace needs about a process.
enum ProcFS {
    static func comm(of pid: Int32) -> String? {
        readPseudoFile("/proc/\(pid)/comm")?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func parentPID(of pid: Int32) -> Int32? {
        guard let stat = readPseudoFile("/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: ")") else { return nil }
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }

    /// The tids of a process's live threads (/proc/PID/task), empty if it is gone.
    static func threads(of pid: Int32) -> [Int32] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return [] }
        return names.compactMap { Int32($0) }.sorted()
    }

    /// A thread's current name.
    static func threadComm(pid: Int32, tid: Int32) -> String? {
        readPseudoFile("/proc/\(pid)/task/\(tid)/comm")?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Reads a /proc or /sys file whole. These report a size of 0, so this reads
/// until EOF instead of trusting stat().
func readPseudoFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var data = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        data.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: data, as: UTF8.self)
}
