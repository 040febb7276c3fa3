import CowTraceFormat
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A running redis-server on this host: its pid (what the tracer follows)
/// and the loopback port to talk to it on.
public struct RedisServer: Equatable, Sendable {
    public let pid: Int32
    public let port: UInt16
    public let host: String

    public init(pid: Int32, port: UInt16, host: String = "127.0.0.1") {
        self.pid = pid
        self.port = port
        self.host = host
    }

    public func connect(timeoutSeconds: Double = 5) throws -> RedisClient {
        try RedisClient(host: host, port: port, timeoutSeconds: timeoutSeconds)
    }

    /// Throws `saveInProgress` when a BGSAVE runs already (checked before
    /// loading the tracer, and again right before BGSAVE).
    public func checkNoSaveInProgress() throws {
        let client = try connect()
        defer { client.close() }
        if try client.info("persistence").integer("rdb_bgsave_in_progress") == 1 {
            throw RedisError.saveInProgress(host: host, port: port)
        }
    }

    /// Finds the server: by pid (checked to be redis-server; its port read
    /// from its listening sockets unless given), by port (INFO server's
    /// process_id), or both (checked to agree).
    public static func locate(pid: Int32?, port: UInt16?, host: String = "127.0.0.1") throws -> RedisServer {
        if let pid {
            try checkIsRedisServer(pid: pid)
            let port = try port ?? listeningPorts(of: pid).first.orThrow(RedisError.noPort(pid: pid))
            if let actual = try? processID(host: host, port: port), actual != pid {
                throw RedisError.pidMismatch(port: port, expected: pid, actual: actual)
            }
            return RedisServer(pid: pid, port: port, host: host)
        }
        let port = port ?? 6379
        return RedisServer(pid: try processID(host: host, port: port), port: port, host: host)
    }

    /// INFO server's process_id.
    static func processID(host: String, port: UInt16) throws -> Int32 {
        let client = try RedisClient(host: host, port: port)
        defer { client.close() }
        guard let pid = try client.info("server").integer("process_id") else {
            throw RedisError.missingField(section: "server", field: "process_id")
        }
        return Int32(pid)
    }

    /// Throws `notRedisServer` unless pid's comm or executable is redis-server
    /// (Debian's redis-check-rdb/-aof are the same binary under another name).
    public static func checkIsRedisServer(pid: Int32) throws {
        guard pid > 0, let comm = ProcFS.comm(of: pid) else { throw TracerError.noSuchProcess(pid: pid) }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? ""
        let exeName = (exe as NSString).lastPathComponent
        if comm.hasPrefix("redis-server") || exeName.hasPrefix("redis-server") { return }
        throw RedisError.notRedisServer(pid: pid, actual: exeName.isEmpty ? comm : "\(comm), \(exe)")
    }

    /// TCP ports pid listens on, IPv4 first: its socket inodes matched with
    /// the LISTEN rows of /proc/PID/net/tcp and tcp6.
    static func listeningPorts(of pid: Int32) -> [UInt16] {
        let fdDir = "/proc/\(pid)/fd"
        var inodes = Set<String>()
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: fdDir)) ?? [] {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdDir)/\(fd)"),
               target.hasPrefix("socket:[") {
                inodes.insert(String(target.dropFirst(8).dropLast()))
            }
        }
        var ports: [UInt16] = []
        for table in ["tcp", "tcp6"] {
            guard let text = readPseudoFile("/proc/\(pid)/net/\(table)") else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ")
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                guard f.count > 9, f[3] == "0A", inodes.contains(String(f[9])),
                      let portHex = f[1].split(separator: ":").last, let port = UInt16(portHex, radix: 16) else { continue }
                if !ports.contains(port) { ports.append(port) }
            }
        }
        return ports
    }
}

fileprivate extension Optional {
    func orThrow(_ error: @autoclosure () -> Error) throws -> Wrapped {
        guard let value = self else { throw error() }
        return value
    }
}
