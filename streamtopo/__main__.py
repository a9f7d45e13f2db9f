from streamtopo.app.cli import main

raise SystemExit(main())
