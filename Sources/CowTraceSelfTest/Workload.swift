import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The cowtrace-workload program: controlled fork/CoW scenarios.
public struct Workload {
    public let path: String

    /// What the workload reports on its last line.
    public struct Report: Decodable, Sendable {
        public let workload: String
        public let parent: Int32
        public let child: Int32?
        public let pages: Int
        public let page_size: Int
        public let region_on_tmpfs: Bool?
        /// The frame-number truth (nil without CAP_SYS_ADMIN, or from an
        /// older workload): what each side's writes did to its page frames.
        public let frames: Frames?

        public struct Frames: Decodable, Sendable {
            public let parent: FrameTruth
            /// nil when the child could not report (killed, or no fork).
            public let child: FrameTruth?
            public func of(_ role: Scenario.Role) -> FrameTruth? { role == .parent ? parent : child }
        }
    }

    /// From /proc/self/pagemap before and after each write step: a page whose
    /// frame changed was copied. Independent of any tracer.
    public struct FrameTruth: Decodable, Sendable, Equatable {
        /// Pages the side's write steps wrote.
        public let written: Int
        /// Anonymous pages whose frame changed: copy-on-write copies.
        public let copied: Int
        /// Private file pages that became anonymous: copies from the page cache.
        public let file_copied: Int
        /// Zero-page region pages that got a frame of their own.
        public let zero_filled: Int
    }

    /// Finds the workload: $COWTRACE_WORKLOAD, next to this executable, or PATH.
    public static func locate() throws -> Workload {
        var candidates: [String] = []
        if let env = Foundation.ProcessInfo.processInfo.environment["COWTRACE_WORKLOAD"] { candidates.append(env) }
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let dir = (exe as NSString).deletingLastPathComponent
            candidates.append(dir + "/cowtrace-workload")
            candidates.append((dir as NSString).deletingLastPathComponent + "/cowtrace-workload")
        }
        for dir in (Foundation.ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            candidates.append("\(dir)/cowtrace-workload")
        }
        if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            return Workload(path: found)
        }
        throw TracerError.workloadNotFound(searched: Array(candidates.prefix(3)))
    }

    /// Runs the workload to completion and decodes its report. With
    /// `atReady`, the workload waits after its start-up (--handshake) until
    /// `atReady(parentPID)` returns: a tracer takes its baseline there.
    public func run(_ arguments: [String], atReady: ((Int32) throws -> Void)? = nil) throws -> Report {
        let all = atReady == nil ? arguments : ["--handshake"] + arguments
        let (pid, output, input) = try Subprocess.spawn([path] + all, captureOutput: true, pipeInput: atReady != nil)
        var data = Data()
        if let atReady, let output, let input {
            var line = Data()
            while true {
                let byte = output.readData(ofLength: 1)
                if byte.isEmpty || byte == Data("\n".utf8) { break }
                line.append(byte)
            }
            if String(decoding: line, as: UTF8.self).hasPrefix("ready") {
                do { try atReady(pid) } catch { kill(pid, SIGKILL); _ = Subprocess.wait(pid); throw error }
                input.write(Data("g".utf8))
            } else {
                data.append(line)
            }
            try? input.close()
        }
        data.append(output?.readDataToEndOfFile() ?? Data())
        let status = Subprocess.waitForExit(pid)
        let text = String(decoding: data, as: UTF8.self)
        guard status.shellCode == 0, let line = text.split(separator: "\n").last,
              let report = try? JSONDecoder().decode(Report.self, from: Data(line.utf8)) else {
            throw TracerError.workloadFailed(arguments: arguments, status: status, output: String(text.suffix(200)))
        }
        return report
    }
}
