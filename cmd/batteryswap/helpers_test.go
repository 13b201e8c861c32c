package main

import "batteryswap/api"

func hashForTest(pw string) (string, error) { return api.HashPassword(pw, 4) }
