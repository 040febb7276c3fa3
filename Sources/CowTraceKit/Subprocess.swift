import CowTraceFormat
import CBPF
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Starts programs without fork(): posix_spawn uses CLONE_VM|CLONE_VFORK, so
/// the child never write-faults on cowtrace's pages before its exec, and the
/// kernel sees it as a fork by cowtrace (which `-c` tracing keys on).
public enum Subprocess {
    /// Starts `arguments` (PATH is searched). With `captureOutput`, returns a
    /// pipe reading the child's stdout.
    public static func spawn(_ arguments: [String], captureOutput: Bool = false) throws -> (pid: Int32, output: FileHandle?) {
        let (pid, output, _) = try spawn(arguments, captureOutput: captureOutput, pipeInput: false)
        return (pid, output)
    }

    /// As above, and with `pipeInput` also returns a pipe writing the child's stdin.
    public static func spawn(_ arguments: [String], captureOutput: Bool, pipeInput: Bool) throws -> (pid: Int32, output: FileHandle?, input: FileHandle?) {
        precondition(!arguments.isEmpty)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pipeFDs: [Int32] = [-1, -1]
        if captureOutput {
            guard cbpf_pipe_cloexec(&pipeFDs) == 0 else {
                throw TracerError.commandFailedToStart(command: arguments.joined(separator: " "), errno: .current)
            }
            posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
            posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
            posix_spawn_file_actions_addclose(&actions, pipeFDs[1])
        }
        var inputFDs: [Int32] = [-1, -1]
        if pipeInput {
            guard cbpf_pipe_cloexec(&inputFDs) == 0 else {
                if captureOutput { close(pipeFDs[0]); close(pipeFDs[1]) }
                throw TracerError.commandFailedToStart(command: arguments.joined(separator: " "), errno: .current)
            }
            posix_spawn_file_actions_adddup2(&actions, inputFDs[0], 0)
            posix_spawn_file_actions_addclose(&actions, inputFDs[0])
            posix_spawn_file_actions_addclose(&actions, inputFDs[1])
        }
        let cArgs = arguments.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, arguments[0], &actions, nil, cArgs, environ)
        if captureOutput { close(pipeFDs[1]) }
        if pipeInput { close(inputFDs[0]) }
        guard rc == 0 else {
            if captureOutput { close(pipeFDs[0]) }
            if pipeInput { close(inputFDs[1]) }
            throw TracerError.commandFailedToStart(command: arguments.joined(separator: " "), errno: Errno(rc))
        }
        return (pid,
                captureOutput ? FileHandle(fileDescriptor: pipeFDs[0], closeOnDealloc: true) : nil,
                pipeInput ? FileHandle(fileDescriptor: inputFDs[1], closeOnDealloc: true) : nil)
    }

    /// Waits for pid; returns its exit status (128+signal if killed).
    public static func wait(_ pid: Int32) -> Int32 { waitForExit(pid).shellCode }

    /// Non-blocking: the exit status (128+signal if killed), or nil while the process runs.
    public static func poll(_ pid: Int32) -> Int32? { pollExit(pid)?.shellCode }

    /// Waits for pid; how it ended (`.notOurChild` if waitpid cannot tell).
    public static func waitForExit(_ pid: Int32) -> ExitStatus {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return .notOurChild }
        }
        return ExitStatus(raw: status)
    }

    /// Non-blocking: nil while the process runs, then how it ended.
    public static func pollExit(_ pid: Int32) -> ExitStatus? {
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == 0 { return nil }
        return rc < 0 ? .notOurChild : ExitStatus(raw: status)
    }
}
