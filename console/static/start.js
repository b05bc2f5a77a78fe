// Loaded last: every section has registered itself; sign in and show the first one.
"use strict";

document.addEventListener("DOMContentLoaded", () => Console.start());
