import CowTraceFormat
import CowTraceKit
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The one text for how a process ended, checked against real processes'
/// waitpid statuses (the kernel's own encoding of exit_code).
final class ExitStatusTests: XCTestCase {
    private func ending(of script: String) throws -> ExitStatus {
        let pid = try Subprocess.spawn(["sh", "-c", script]).pid
        return Subprocess.waitForExit(pid)
    }

    func testAnExitIsItsStatus() throws {
        let s = try ending(of: "exit 3")
        XCTAssertNil(s.signal)
        XCTAssertEqual(s.status, 3)
        XCTAssertEqual(s.shellCode, 3)
        XCTAssertEqual(s.description, "exited with status 3")
        XCTAssertEqual(try ending(of: "exit 0").description, "exited with status 0")
    }

    /// Status 139 from exit() and death by SIGSEGV look alike in $?; the text tells them apart.
    func testASignalIsNamedNotNumbered() throws {
        let killed = try ending(of: "kill -SEGV $$")
        XCTAssertEqual(killed.signal, SIGSEGV)
        XCTAssertEqual(killed.shellCode, 128 + SIGSEGV)
        XCTAssertTrue(killed.description.hasPrefix("killed by SIGSEGV"), killed.description)
        let exited = try ending(of: "exit 139")
        XCTAssertEqual(exited.shellCode, killed.shellCode)
        XCTAssertEqual(exited.description, "exited with status 139")
        XCTAssertEqual(try ending(of: "kill -TERM $$").description, "killed by SIGTERM")
        XCTAssertEqual(try ending(of: "kill -KILL $$").description, "killed by SIGKILL")
    }

    /// A core dump sets 0x80 (WCOREFLAG); with RLIMIT_CORE 0 the kernel does not set it.
    func testCoreDumpFlag() throws {
        let s = ExitStatus(raw: SIGSEGV | 0x80)
        XCTAssertTrue(s.coreDumped)
        XCTAssertEqual(s.description, "killed by SIGSEGV (core dumped)")
        XCTAssertEqual(s.shellCode, 139)
        XCTAssertFalse(ExitStatus(raw: Int32(0x80 << 8)).coreDumped, "exit(128) is no core dump")
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_CORE.rawValue), &limit)
        if limit.rlim_cur == 0 { XCTAssertFalse(try ending(of: "kill -SEGV $$").coreDumped) }
    }

    func testEveryStandardSignalHasItsShellName() throws {
        // `kill -l N` is the truth: the shell's own table.
        for n in [SIGHUP, SIGINT, SIGQUIT, SIGABRT, SIGBUS, SIGKILL, SIGSEGV, SIGPIPE, SIGTERM, SIGCHLD, SIGSYS] {
            let pid = try Subprocess.spawn(["sh", "-c", "kill -l \(n)"], captureOutput: true)
            let name = String(decoding: pid.output!.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            _ = Subprocess.wait(pid.pid)
            XCTAssertEqual(ExitStatus.signalName(n), "SIG" + name)
        }
        XCTAssertEqual(ExitStatus.signalName(__libc_current_sigrtmin() + 2), "SIGRTMIN+2")
        XCTAssertEqual(ExitStatus.signalName(99), "signal 99")
    }

    /// task->exit_code as the BPF side stores it (u32) decodes the same way.
    func testKernelExitCodeAsStored() {
        XCTAssertEqual(ExitStatus(raw: UInt32(2 << 8)).description, "exited with status 2")
        XCTAssertEqual(ExitStatus(raw: UInt32(SIGKILL)).description, "killed by SIGKILL")
    }
}
