import CowTraceRedis
import CowTraceKit
import CowTraceTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A real redis-server from Debian's package, on a free loopback port in a
/// temp dir, killed when the test ends (pass or fail). Never a mock.
final class RedisTestServer {
    let port: UInt16
    let directory: URL
    let process: Process

    /// Skips (or fails under COWTRACE_REQUIRE_BPF=1) when redis-server is
    /// not installed: `scripts/setup` installs it.
    init(_ test: XCTestCase, extraArguments: [String] = []) throws {
        guard let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            if ProcessInfo.processInfo.environment["COWTRACE_REQUIRE_BPF"] == "1" { XCTFail("redis-server is missing: run scripts/setup") }
            throw XCTSkip("redis-server is not installed: run scripts/setup (apt-get install redis-server)")
        }
        port = try freeLoopbackPort()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cowtrace-redis-\(port)-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory.path, "--save", "",
                             "--appendonly", "no", "--enable-debug-command", "local", "--daemonize", "no",
                             "--logfile", directory.appendingPathComponent("redis.log").path] + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let stop = { [process, directory] in
            if process.isRunning {
                // A BGSAVE child outlives a killed parent: kill it first.
                let pid = process.processIdentifier
                let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
                for child in children.split(separator: " ").compactMap({ Int32($0) }) { kill(child, SIGKILL) }
                kill(pid, SIGKILL)
                process.waitUntilExit()
            }
            try? FileManager.default.removeItem(at: directory)
        }
        test.addTeardownBlock(stop)
        let deadline = Date().addingTimeInterval(10)
        while true {
            if let client = try? RedisClient(port: port, timeoutSeconds: 1, password: nil) {
                // -NOAUTH and -LOADING also prove it is up.
                if (try? client.pipeline([["PING"]])) != nil { return }
            }
            if !process.isRunning || Date() > deadline {
                let log = (try? String(contentsOf: directory.appendingPathComponent("redis.log"), encoding: .utf8)) ?? ""
                stop()
                throw RedisTestError.didNotStart(log: String(log.suffix(2000)))
            }
            usleep(20_000)
        }
    }

    var pid: Int32 { process.processIdentifier }

    func client(timeoutSeconds: Double = 10) throws -> RedisClient {
        try RedisClient(port: port, timeoutSeconds: timeoutSeconds, password: nil)
    }

    var log: String {
        (try? String(contentsOf: directory.appendingPathComponent("redis.log"), encoding: .utf8)) ?? ""
    }

    /// `keys` string keys key:0 ... of `valueBytes` bytes each (DEBUG POPULATE).
    func fill(keys: Int, valueBytes: Int) throws {
        try client(timeoutSeconds: 60).command(["DEBUG", "POPULATE", "\(keys)", "key", "\(valueBytes)"])
    }

    /// Polls INFO persistence until `field` reads `value`.
    func waitFor(_ field: String, _ value: Int64, seconds: Double = 30) throws -> Bool {
        let c = try client()
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try c.info("persistence").integer(field) == value { return true }
            usleep(10_000)
        }
        return false
    }
}

enum RedisTestError: Error { case didNotStart(log: String) }

/// A port nothing listens on right now: bind port 0, read it back, close.
func freeLoopbackPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
            guard bind(fd, p, length) == 0 else { return -1 }
            return getsockname(fd, p, &length)
        }
    }
    guard rc == 0 else { throw Errno.current }
    return UInt16(bigEndian: address.sin_port)
}

/// The client and the server lookup against a real redis-server (no BPF).
final class RedisClientTests: XCTestCase {
    func testInfoSetAndGetOnARealServer() throws {
        let server = try RedisTestServer(self)
        let client = try server.client()
        XCTAssertEqual(try client.command(["PING"]), .simple("PONG"))
        XCTAssertEqual(try client.command(["SET", "k", "v\r\nwith crlf"]), .simple("OK"))
        XCTAssertEqual(try client.command(["GET", "k"]).text, "v\r\nwith crlf")
        XCTAssertEqual(try client.command(["GET", "missing"]), .bulk(nil))
        XCTAssertEqual(try client.command(["INCR", "n"]), .integer(1))
        let info = try client.info("server")
        XCTAssertEqual(info.integer("process_id"), Int64(server.pid))
        XCTAssertEqual(info.integer("tcp_port"), Int64(server.port))
        // A reply bigger than one read: the whole INFO.
        XCTAssertNotNil(try client.info()["rdb_last_cow_size"])
        let replies = try client.pipeline((0..<1000).map { ["SET", "p:\($0)", String(repeating: "x", count: 100)] })
        XCTAssertEqual(replies.count, 1000)
        XCTAssertTrue(replies.allSatisfy { $0 == .simple("OK") })
    }

    func testLocateByPortAndByPid() throws {
        let server = try RedisTestServer(self)
        XCTAssertEqual(try RedisServer.locate(pid: nil, port: server.port), RedisServer(pid: server.pid, port: server.port))
        XCTAssertEqual(try RedisServer.locate(pid: server.pid, port: nil), RedisServer(pid: server.pid, port: server.port),
                       "the port is read from the pid's listening socket")
    }

    func testPidAndPortOfDifferentServers() throws {
        let a = try RedisTestServer(self), b = try RedisTestServer(self)
        XCTAssertThrowsError(try RedisServer.locate(pid: a.pid, port: b.port)) { error in
            XCTAssertEqual(error as? RedisError, .pidMismatch(port: b.port, expected: a.pid, actual: b.pid))
        }
    }

    func testNoRedisAtThatPort() throws {
        let port = try freeLoopbackPort()
        XCTAssertThrowsError(try RedisClient(port: port)) { error in
            XCTAssertEqual(error as? RedisError, .notListening(host: "127.0.0.1", port: port))
            XCTAssertEqual("\(error)", "no Redis listening on 127.0.0.1:\(port): start redis-server or pass --port")
        }
    }

    func testAPidThatIsNotRedisServer() throws {
        XCTAssertThrowsError(try RedisServer.locate(pid: getpid(), port: nil)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("pid \(getpid()) is not redis-server (it is "), text)
        }
    }

    func testRefusedCommandIsTyped() throws {
        let server = try RedisTestServer(self)
        XCTAssertThrowsError(try server.client().command(["NOSUCHCOMMAND"])) { error in
            guard case .refused(_, _, "NOSUCHCOMMAND", let message)? = error as? RedisError else {
                return XCTFail("\(error)")
            }
            XCTAssertTrue(message.hasPrefix("ERR unknown command"), message)
        }
    }

    func testBGSaveAlreadyInProgress() throws {
        let server = try RedisTestServer(self)
        try server.fill(keys: 20000, valueBytes: 100)
        let client = try server.client()
        try client.command(["CONFIG", "SET", "rdb-key-save-delay", "1000"])
        try client.bgsave()
        XCTAssertThrowsError(try client.bgsave()) { error in
            XCTAssertEqual(error as? RedisError, .saveInProgress(host: "127.0.0.1", port: server.port))
        }
        XCTAssertThrowsError(try RedisServer(pid: server.pid, port: server.port).checkNoSaveInProgress())
    }
}
