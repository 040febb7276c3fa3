import Foundation

/// What a built executable printed, and how it ended.
public struct CommandResult {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Runs a built product (`cowtrace`, `cowtrace-workload`) with `arguments`;
/// with `interruptAfter`, sends SIGINT after that many seconds. `through`:
/// a command that runs the product (e.g. setpriv to drop privileges).
public func runProduct(_ name: String, _ arguments: [String], environment: [String: String] = [:],
                       interruptAfter: Double? = nil, through wrapper: [String] = []) throws -> CommandResult {
    let process = Process()
    let binary = builtProductsDirectory().appendingPathComponent(name)
    if let first = wrapper.first {
        process.executableURL = URL(fileURLWithPath: first)
        process.arguments = Array(wrapper.dropFirst()) + [binary.path] + arguments
    } else {
        process.executableURL = binary
        process.arguments = arguments
    }
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    if let delay = interruptAfter {
        Thread.sleep(forTimeInterval: delay)
        process.interrupt()
    }
    // Read both pipes at once: a full stderr pipe must not block the child.
    final class Box: @unchecked Sendable { var data = Data() }
    let stderrBox = Box()
    let done = DispatchSemaphore(value: 0)
    let errHandle = err.fileHandleForReading
    DispatchQueue.global().async {
        stderrBox.data = errHandle.readDataToEndOfFile()
        done.signal()
    }
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    done.wait()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                         stderr: String(decoding: stderrBox.data, as: UTF8.self))
}

/// The path of a built product, for arguments such as `-c cowtrace-workload`.
public func productPath(_ name: String) -> String {
    builtProductsDirectory().appendingPathComponent(name).path
}

/// The slack every live count is held to: 32 pages plus 0.5 % of the expected count.
public func pageSlack(_ expected: Int) -> Int { 32 + expected / 200 }

/// The workload's first JSON line (it prints {"workload":…,"parent":…,"child":…}).
public func workloadLine(_ stdout: String) -> [String: Any]? {
    for line in stdout.split(separator: "\n") where line.hasPrefix("{\"workload\"") {
        return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    }
    return nil
}
