import CowTraceKit
import CowTraceSelfTest
import CowTraceTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `cowtrace forecast -p` on a real process in a real memory cgroup, then the
/// fork it forecast, for real: the kernel's OOM kill is the truth.
final class ForecastCLITests: XCTestCase {
    /// A 180 MiB process in a 256 MiB cgroup without swap forks, and its
    /// child (no oom_score_adj of its own: the untuned case) rewrites every
    /// page. The forecast must say at risk, name the cgroup, give its headroom
    /// as the cgroup's own files do, and choose the victim the kernel kills.
    func testForecastOfAForkThatWillNotFitNamesTheDomainAndTheVictimTheKernelKills() throws {
        try requireBPF() // root: it makes a memory cgroup
        let limit: UInt64 = 256 << 20, pages = 180 * 256
        let cgroup = try TemporaryMemoryCgroup(limitBytes: limit)
        defer { cgroup.remove() }
        let (pid, output, input) = try Self.startWorkload(in: cgroup, ["--pages", "\(pages)", "child:write:0:\(pages)", "child:exit"])
        defer { kill(pid, SIGKILL); _ = Subprocess.wait(pid) }

        // The truth for the headroom, from the cgroup's own files, read around the forecast.
        func current() -> UInt64 { UInt64((try? String(contentsOfFile: cgroup.path + "/" + cgroup.hierarchy.usageFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0 }
        let before = current()
        let result = try runProduct("cowtrace", ["forecast", "-p", "\(pid)", "--format", "json"])
        let after = current()
        XCTAssertEqual(result.status, 0, result.stderr)
        let f = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], result.stdout)
        XCTAssertEqual(f["domain"] as? String, cgroup.cgroupPath)
        XCTAssertEqual(f["at_risk"] as? Bool, true, result.stdout)
        XCTAssertEqual(f["limit_bytes"] as? UInt64, limit)
        let headroom = try XCTUnwrap(f["headroom_bytes"] as? UInt64)
        XCTAssertLessThanOrEqual(headroom, limit - min(before, after) + (1 << 20), "headroom vs memory.max − memory.current (slack 1 MiB)")
        XCTAssertGreaterThanOrEqual(headroom + (1 << 20), limit - max(before, after))
        // The workload's region is its private writable anonymous memory, plus its own stack and libc data.
        let copyable = try XCTUnwrap(f["copyable_bytes"] as? UInt64)
        XCTAssertGreaterThanOrEqual(copyable, UInt64(pages) * 4096)
        XCTAssertLessThanOrEqual(copyable, UInt64(pages) * 4096 + (2 << 20), "copyable: the 180 MiB region + at most 2 MiB of the workload's own")
        let copiedBeforeOOM = try XCTUnwrap(f["copied_before_oom_bytes"] as? UInt64, result.stdout)
        XCTAssertLessThanOrEqual(copiedBeforeOOM, headroom + (1 << 20), "the simulated kill comes when the headroom is used up (one 1 MiB chunk of slack)")
        let victim = try XCTUnwrap(f["likely_victim"] as? [String: Any], result.stdout)

        // Now the fork, for real.
        let kills = Self.oomKills(cgroup)
        input?.write(Data("g".utf8))
        try? input?.close()
        let text = String(decoding: output?.readDataToEndOfFile() ?? Data(), as: UTF8.self)
        let status = Subprocess.waitForExit(pid)
        XCTAssertEqual(Self.oomKills(cgroup), kills + 1, "the kernel's memory.events oom_kill: one kill in the cgroup")
        let childKilled = text.contains("\"child_status\":9,")
        let parentKilled = status.signal == SIGKILL
        XCTAssertNotEqual(childKilled, parentKilled, "exactly one of parent and child was killed: \(status) \(text.suffix(300))")
        XCTAssertEqual(victim["is_child"] as? Bool, !parentKilled, "forecast victim \(victim) vs the kernel's (parent killed: \(parentKilled))")
    }

    /// The issue's scenario, live: the same fork, its child (oom_score_adj 800)
    /// rewriting every page at 30 MiB/s, under `stat --forecast`. The forecast
    /// must flag the fork at risk at least 0.5 s before the kernel's kill,
    /// in the right cgroup, naming the child as the likely victim.
    func testStatForecastFlagsTheForkBeforeTheOOMKill() throws {
        try requireBPF()
        let limit: UInt64 = 256 << 20, pages = 180 * 256
        let cgroup = try TemporaryMemoryCgroup(limitBytes: limit)
        defer { cgroup.remove() }
        let (pid, output, input) = try Self.startWorkload(in: cgroup, ["--rate", "30", "--child-oom-score-adj", "800", "--pages", "\(pages)", "child:write:0:\(pages)", "child:exit"])
        defer { kill(pid, SIGKILL); _ = Subprocess.wait(pid) }

        // The fork and its kill are watched from a second thread; stat runs from
        // this one (a process spawned from a Dispatch thread inherits its
        // blocked SIGINT, and could not be stopped).
        final class Box: @unchecked Sendable { var killedAt: Date?; var text = "" }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let inputHandle = input, outputHandle = output
        DispatchQueue.global().async {
            Thread.sleep(forTimeInterval: 2) // stat attached, a baseline table or two
            let kills = Self.oomKills(cgroup)
            inputHandle?.write(Data("g".utf8))
            try? inputHandle?.close()
            let deadline = Date().addingTimeInterval(8)
            while box.killedAt == nil && Date() < deadline {
                if Self.oomKills(cgroup) > kills { box.killedAt = Date() } else { usleep(10_000) }
            }
            box.text = String(decoding: outputHandle?.readDataToEndOfFile() ?? Data(), as: UTF8.self)
            done.signal()
        }
        let result = try runProduct("cowtrace", ["stat", "-p", "\(pid)", "--forecast", "--format", "json", "0.2"], interruptAfter: 9)
        done.wait()
        _ = Subprocess.waitForExit(pid)
        let killedAt = box.killedAt, text = box.text
        let kill = try XCTUnwrap(killedAt, "no OOM kill in the cgroup within 8 s")
        XCTAssertTrue(text.contains("\"child_status\":9,"), "the child was the kernel's victim: \(text.suffix(200))")

        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var flagged: (time: Date, risk: [String: Any])?
        for l in result.stdout.split(separator: "\n") {
            guard let o = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any],
                  let forecast = o["forecast"] as? [[String: Any]], let t = (o["time"] as? String).flatMap(iso.date) else { continue }
            if let r = forecast.first(where: { $0["at_risk"] as? Bool == true }) { flagged = (t, r); break }
        }
        let (time, risk) = try XCTUnwrap(flagged, "no interval flagged the fork at risk: \(result.stdout.suffix(600)) \(result.stderr)")
        print("stat --forecast: flagged \(String(format: "%.2f", kill.timeIntervalSince(time))) s before the kill: \(risk)")
        XCTAssertGreaterThanOrEqual(kill.timeIntervalSince(time), 0.5, "flagged \(time), killed \(kill)")
        XCTAssertEqual(risk["domain"] as? String, cgroup.cgroupPath)
        XCTAssertEqual(risk["parent_pid"] as? Int, Int(pid))
        let child = try XCTUnwrap(risk["child_pid"] as? Int)
        XCTAssertEqual(risk["likely_victim_pid"] as? Int, child, "oom_score_adj 800 makes the child the victim")
        XCTAssertEqual(Self.lastKilledPID(), child, "the pid dmesg says the kernel killed")
        // Shared: the 180 MiB region less what was copied by then (at most 30 MiB/s × the 0.2 s interval + slack).
        let shared = try XCTUnwrap(risk["shared_bytes"] as? UInt64)
        XCTAssertLessThanOrEqual(shared, UInt64(pages) * 4096 + (2 << 20))
        XCTAssertGreaterThan(shared, UInt64(limit) / 2)
    }

    /// A fork that fits: the same 180 MiB process in a 600 MiB cgroup. `forecast -p`
    /// says it fits, with a peak within 5 % of the cgroup's measured peak once the
    /// child has written every page; `stat --forecast` never flags it.
    func testForkThatFitsIsNeverFlaggedAndTheWhatIfPeakMatchesTheMeasuredPeak() throws {
        try requireBPF()
        let limit: UInt64 = 600 << 20, pages = 180 * 256
        let cgroup = try TemporaryMemoryCgroup(limitBytes: limit)
        defer { cgroup.remove() }
        let (pid, output, input) = try Self.startWorkload(in: cgroup, ["--rate", "60", "--pages", "\(pages)", "child:write:0:\(pages)", "child:exit"])
        defer { kill(pid, SIGKILL); _ = Subprocess.wait(pid) }
        let whatIf = try runProduct("cowtrace", ["forecast", "-p", "\(pid)", "--format", "json"])
        let f = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(whatIf.stdout.utf8)) as? [String: Any], whatIf.stdout + whatIf.stderr)
        XCTAssertEqual(f["at_risk"] as? Bool, false, whatIf.stdout)
        XCTAssertEqual(f["domain"] as? String, cgroup.cgroupPath)
        let peak = Double(try XCTUnwrap(f["peak_bytes"] as? UInt64))

        final class Box: @unchecked Sendable { var text = "" }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let inputHandle = input, outputHandle = output
        DispatchQueue.global().async {
            Thread.sleep(forTimeInterval: 2)
            inputHandle?.write(Data("g".utf8))
            try? inputHandle?.close()
            box.text = String(decoding: outputHandle?.readDataToEndOfFile() ?? Data(), as: UTF8.self)
            done.signal()
        }
        let result = try runProduct("cowtrace", ["stat", "-p", "\(pid)", "--forecast", "--format", "json", "0.2"], interruptAfter: 7)
        done.wait()
        _ = Subprocess.waitForExit(pid)
        XCTAssertTrue(box.text.contains("\"child_status\":0,"), "the child wrote every page and exited: \(box.text.suffix(200))")
        var readings = 0
        for l in result.stdout.split(separator: "\n") {
            guard let o = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any],
                  let forecast = o["forecast"] as? [[String: Any]] else { continue }
            readings += forecast.count
            XCTAssertFalse(forecast.contains { $0["at_risk"] as? Bool == true }, "flagged a fork that fits: \(l)")
        }
        XCTAssertGreaterThan(readings, 5, "the fork was read while it lived: \(result.stdout.suffix(400))")

        let peakFile = cgroup.hierarchy.version == .v2 ? "memory.peak" : "memory.max_usage_in_bytes"
        let measured = Double((try? String(contentsOfFile: cgroup.path + "/" + peakFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        XCTAssertGreaterThan(measured, 0, "no \(peakFile)")
        print(String(format: "forecast -p peak %.1f MiB vs measured %@ %.1f MiB (%+.2f %%)", peak / 1_048_576, peakFile, measured / 1_048_576, (peak - measured) / measured * 100))
        XCTAssertEqual(peak, measured, accuracy: measured * 0.05, "forecast peak vs \(peakFile)")
    }

    /// cowtrace-workload --handshake ARGS, started in `cgroup`, once it says
    /// "ready": its region is filled, and it forks when a byte comes on `input`.
    static func startWorkload(in cgroup: TemporaryMemoryCgroup, _ arguments: [String]) throws -> (pid: Int32, output: FileHandle?, input: FileHandle?) {
        let script = "echo $$ > \"$1\" && shift && exec \"$@\""
        let (pid, output, input) = try Subprocess.spawn(["/bin/sh", "-c", script, "sh", cgroup.procsFile, productPath("cowtrace-workload"), "--handshake"] + arguments,
                                                        captureOutput: true, pipeInput: true)
        var line = Data()
        while let output {
            let byte = output.readData(ofLength: 1)
            if byte.isEmpty || byte == Data("\n".utf8) { break }
            line.append(byte)
        }
        guard String(decoding: line, as: UTF8.self).hasPrefix("ready") else {
            kill(pid, SIGKILL)
            _ = Subprocess.wait(pid)
            XCTFail("the workload did not get ready: \(String(decoding: line, as: UTF8.self))")
            throw CocoaError(.fileReadUnknown)
        }
        return (pid, output, input)
    }

    /// The pid of the last "Killed process N" line in the kernel log.
    static func lastKilledPID() -> Int? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/dmesg")
        let out = Pipe()
        p.standardOutput = out
        try? p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard let line = text.split(separator: "\n").last(where: { $0.contains("Killed process ") }),
              let range = line.range(of: "Killed process ") else { return nil }
        return Int(line[range.upperBound...].prefix { $0.isNumber })
    }

    static func oomKills(_ cgroup: TemporaryMemoryCgroup) -> Int {
        let file = cgroup.hierarchy.version == .v2 ? "memory.events" : "memory.oom_control"
        let text = (try? String(contentsOfFile: cgroup.path + "/" + file, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.split(separator: " ")[1]) ?? 0
        }
        return 0
    }

    func testForecastOfAMissingProcessIsARuntimeErrorAndCSVIsAUsageError() throws {
        let missing = try runProduct("cowtrace", ["forecast", "-p", "999999999"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("no process 999999999"), missing.stderr)
        let csv = try runProduct("cowtrace", ["forecast", "-p", "1", "--format", "csv"])
        XCTAssertEqual(csv.status, 64)
        XCTAssertTrue(csv.stderr.contains("text") && csv.stderr.contains("json"), csv.stderr)
    }
}
