"""Shared helpers of the test modules that run the tools (not a test module)."""
import contextlib
import importlib
import itertools
import os
import os.path as osp
import re
import socket
import subprocess
import sys
import tempfile

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO_ROOT, 'tools')
TEST_CONFIGS = osp.join(REPO_ROOT, 'tests', 'configs')
DET_CONFIG = osp.join(TEST_CONFIGS, 'retinanet_tiny_synthetic.py')
DET_DIST_CONFIG = osp.join(TEST_CONFIGS, 'retinanet_tiny_synthetic_dist.py')
SEG_CONFIG = osp.join(TEST_CONFIGS, 'fpn_tiny_synthetic_seg.py')

# sizes of the synthetic sets the tool tests use (the configs train 1 epoch = 4 iterations)
NUM_TRAIN, NUM_VAL = 8, 4


def make_tool_data(root: str) -> str:
    """Write the small det + seg sets under ``root`` (what SYNTHETIC_DATA_ROOT points to)."""
    from rexnet_backbones.data.synthetic import make_coco_detection, make_segmentation
    make_coco_detection(osp.join(root, 'coco'), num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0)
    make_segmentation(osp.join(root, 'seg'), num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0)
    return root


def tool_env(data_root: str, **extra) -> dict:
    env = dict(os.environ)
    env.update(
        SYNTHETIC_DATA_ROOT=str(data_root),
        # 2 shared cores: one thread per process is much faster than oversubscription
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1',
        PYTHONWARNINGS='ignore',
    )
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO_ROOT, TEST_CONFIGS, env.get('PYTHONPATH')) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(cmd, data_root: str, cwd: str, timeout: float = 300, **env_extra):
    """Run ``cmd`` (list) and return the CompletedProcess (text, stdout+stderr kept apart)."""
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=str(cwd),
        env=tool_env(data_root, **env_extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout)


def run_tool(tool: str, args, data_root: str, cwd: str, timeout: float = 300, **env_extra):
    return run([sys.executable, osp.join(TOOLS, tool), *args], data_root, cwd, timeout,
               **env_extra)


def describe(proc) -> str:
    """Tail of a finished process' output, for assertion messages."""
    return (f'exit code {proc.returncode}\n--- stdout (tail) ---\n{proc.stdout[-4000:]}'
            f'\n--- stderr (tail) ---\n{proc.stderr[-4000:]}')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


_METRIC_RE = r'{}:\s+(-?[0-9.]+)'


def logged_metric(text: str, name: str, occurrence: int = -1) -> float:
    """Value of ``name`` (e.g. 'coco/bbox_mAP', 'mIoU') in an mmengine log; last one by default."""
    values = re.findall(_METRIC_RE.format(re.escape(name)), text)
    if not values:
        raise AssertionError(f'{name} not found in the log')
    return float(values[occurrence])


def run_tool_in_process(tool: str, args, data_root: str, cwd, **env) -> subprocess.CompletedProcess:
    """``python tools/<tool> ARGS`` run inside the test process: the command's ``main`` (``rexnet_cli.<tool name>``,
    imported, as the console command ``rexnet-<tool name>`` runs it) is called with ``ARGS``; its return or
    ``sys.exit`` code is the return code, and what it writes to stdout/stderr (file descriptors 1 and 2) is
    captured. For the checks of a command line, of errors found before any work starts, and of short runs (a tiny
    training or test) whose real command line is tested elsewhere: the imports of torch and mmdet are paid once per
    session instead of once per call. Every tool keeps at least one real subprocess in tests/test_errors.py (exit
    code and streams as a user sees them).

    ``SYNTHETIC_DATA_ROOT=data_root`` and ``env`` are set for this call only, and torch's thread count (``--threads``)
    is restored after it; variables that a library reads when it is imported (``HF_HUB_CACHE``,
    ``OMP_NUM_THREADS``) do not take effect here: use :func:`run_tool` for those."""
    import pytest

    path = osp.join(TOOLS, tool)
    argv = [path, *map(str, args)]
    torch = sys.modules.get('torch')
    threads = torch.get_num_threads() if torch is not None else None
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err, \
            pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr(sys, 'argv', argv)
        mp.setenv('SYNTHETIC_DATA_ROOT', str(data_root))
        for key, value in env.items():
            mp.setenv(key, str(value))
        try:
            with _redirected(out, err):
                _fresh_mmengine_logger()
                code = _run_main(tool, argv[1:])
        finally:
            if threads is not None:
                torch.set_num_threads(threads)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, code, out.read(), err.read())


_LOGGERS = itertools.count()


def _fresh_mmengine_logger() -> None:
    """What a new process has: mmengine's current logger (``print_log(logger='current')`` before a Runner makes its
    own) writes to the captured stdout, not to a stream of an earlier test (a Runner built in a test or fixture)."""
    mm_logging = sys.modules.get('mmengine.logging')
    if mm_logging is not None:
        mm_logging.MMLogger.get_instance(f'run_tool_in_process_{next(_LOGGERS)}', logger_name='mmengine')


def _run_main(tool: str, args) -> int:
    """``rexnet_cli.<tool>.main(args)``; its exit code as the console command's wrapper makes it."""
    main = importlib.import_module(f'rexnet_cli.{osp.splitext(tool)[0]}').main
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


#: text streams on file descriptors 1 and 2, never closed: a logging handler that a tool run in-process made on
#: ``sys.stdout`` keeps writing to whatever fd 1 is later, instead of to a closed file
_FD_STREAMS = {}


def _fd_stream(fd: int):
    if fd not in _FD_STREAMS:
        _FD_STREAMS[fd] = open(fd, 'w', buffering=1, encoding='utf-8', errors='backslashreplace', closefd=False)
    return _FD_STREAMS[fd]


@contextlib.contextmanager
def _redirected(out, err):
    """File descriptors 1/2 (and ``sys.stdout``/``sys.stderr``, written through them) to the files ``out``/``err``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved, streams = (os.dup(1), os.dup(2)), (sys.stdout, sys.stderr)
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    sys.stdout, sys.stderr = _fd_stream(1), _fd_stream(2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
