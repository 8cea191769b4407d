#!/bin/bash
exec env CMOCKA_MESSAGE_OUTPUT=TAP build/tests/test_core
