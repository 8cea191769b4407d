#!/bin/bash
exec env CMOCKA_MESSAGE_OUTPUT=TAP ASAN_OPTIONS=detect_leaks=0 build/san/tests/test_ini
