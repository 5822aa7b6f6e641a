// Carrier for the shared test precompiled header.
