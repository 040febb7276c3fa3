import CowTraceRedis
import XCTest

/// RESP2 and INFO parsing on bytes; the real server is exercised in
/// cowtraceTests/RedisClientTests.
final class RedisProtocolTests: XCTestCase {
    private func parse(_ text: String) throws -> RESPValue { try RESP.parse(Array(text.utf8)) }

    func testEncodesCommandsAsArraysOfBulkStrings() {
        XCTAssertEqual(String(decoding: RESP.encode(["SETRANGE", "key:1", "0", "X"]), as: UTF8.self),
                       "*4\r\n$8\r\nSETRANGE\r\n$5\r\nkey:1\r\n$1\r\n0\r\n$1\r\nX\r\n")
        XCTAssertEqual(String(decoding: RESP.encode(["SET", "k", "é"]), as: UTF8.self), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n")
    }

    func testParsesEveryReplyType() throws {
        XCTAssertEqual(try parse("+Background saving started\r\n"), .simple("Background saving started"))
        XCTAssertEqual(try parse("-ERR Background save already in progress\r\n"), .error("ERR Background save already in progress"))
        XCTAssertEqual(try parse(":1024\r\n"), .integer(1024))
        XCTAssertEqual(try parse("$5\r\nhe\r\nl\r\n"), .bulk(Array("he\r\nl".utf8)))
        XCTAssertEqual(try parse("$-1\r\n"), .bulk(nil))
        XCTAssertEqual(try parse("*-1\r\n"), .array(nil))
        XCTAssertEqual(try parse("*3\r\n:1\r\n$2\r\nok\r\n*1\r\n+x\r\n"),
                       .array([.integer(1), .bulk(Array("ok".utf8)), .array([.simple("x")])]))
    }

    func testRejectsWhatIsNotRESP() {
        XCTAssertThrowsError(try parse("HTTP/1.1 400 Bad Request\r\n")) { error in
            XCTAssertTrue("\(error)".contains("unknown reply type 'H'"), "\(error)")
        }
        XCTAssertThrowsError(try parse("$10\r\nshort\r\n"))
        XCTAssertThrowsError(try parse(":12x\r\n"))
    }

    func testInfoParsing() {
        let info = RedisInfo(parsing: "# Persistence\r\nrdb_bgsave_in_progress:0\r\nrdb_last_cow_size:33402880\r\n\r\n# Stats\r\nlatest_fork_usec:4076\r\nmaster_host:::1\r\n")
        XCTAssertEqual(info.integer("rdb_last_cow_size"), 33_402_880)
        XCTAssertEqual(info.integer("latest_fork_usec"), 4076)
        XCTAssertEqual(info["rdb_bgsave_in_progress"], "0")
        XCTAssertEqual(info["master_host"], "::1", "only the first colon separates")
        XCTAssertNil(info["# Stats"])
    }

    func testErrorsAreOneLineAndSayWhatToDo() {
        let cases: [(RedisError, String)] = [
            (.notListening(host: "127.0.0.1", port: 6390), "no Redis listening on 127.0.0.1:6390: start redis-server or pass --port"),
            (.notRedisServer(pid: 42, actual: "bash"), "pid 42 is not redis-server (it is bash)"),
            (.saveInProgress(host: "127.0.0.1", port: 6379), "a background save is already in progress on Redis at 127.0.0.1:6379"),
            (.refused(host: "127.0.0.1", port: 6379, command: "INFO", message: "NOAUTH Authentication required."), "set REDISCLI_AUTH"),
        ]
        for (error, text) in cases {
            XCTAssertTrue(error.description.contains(text), error.description)
            XCTAssertFalse(error.description.contains("\n"), error.description)
        }
    }

    func testComparisonArithmetic() {
        let c = RedisCowComparison(childType: "rdb", redisField: "rdb_last_cow_size", redisCowBytes: 1000,
                                   cowtraceCowBytes: 900, latestForkMicroseconds: 10, cowtraceForkMicroseconds: 9, saveStatus: "ok")
        XCTAssertEqual(c.differenceBytes, -100)
        XCTAssertEqual(c.differencePercent ?? 0, -10, accuracy: 1e-9)
        let lines = RedisComparisonText.lines(c).joined(separator: "\n")
        XCTAssertTrue(lines.contains("rdb_last_cow_size") && lines.contains("latest_fork_usec"), lines)
    }
}
