"""CPython's multiprocessing tests with the fork start method, as
``test.test_multiprocessing_fork`` builds them (that module is not in this interpreter's
test package; ``test._test_multiprocessing`` is): ``run_suites.py`` names its classes as
``multiprocessing_fork_suites.WithProcessesTestLock`` and so on."""

import test._test_multiprocessing

test._test_multiprocessing.install_tests_in_module_dict(globals(), "fork")
