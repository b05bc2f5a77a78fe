"use strict";
CTI.addStrings({
  en: {
    rec_title: "Recordings", language: "Language", live_calls: "Calls in progress",
    no_live: "No answered call right now.", agent: "Agent", queue: "Queue", caller: "Caller",
    since: "Since", recording: "Recording", actions: "Actions", search: "Search recordings",
    from: "From", to: "To", customer: "Customer", number: "Number", disposition: "Disposition",
    search_btn: "Search", started: "Started", duration: "Duration", status: "Status",
    more: "More", player: "Player", play: "Play", download: "Download", listen: "Listen",
    whisper: "Whisper", barge: "Barge", start: "Record", stop: "Stop", pause: "Pause",
    resume: "Resume", rec_on: "recording", rec_paused: "paused", rec_off: "not recording",
    monitor_started: "Your phone rings: answer it to monitor the call.", no_results: "Nothing found.",
    needs_supervisor: "This page is for supervisors.", audit: "Who listened", history: "History",
    when: "When", who_col: "Who", what: "What",
  },
  zh: {
    rec_title: "录音", language: "语言", live_calls: "进行中的通话", no_live: "当前没有已接通的通话。",
    agent: "坐席", queue: "队列", caller: "主叫", since: "开始", recording: "录音", actions: "操作",
    search: "查询录音", from: "从", to: "到", customer: "客户", number: "号码", disposition: "处理结果",
    search_btn: "查询", started: "开始时间", duration: "时长", status: "状态", more: "更多",
    player: "播放器", play: "播放", download: "下载", listen: "监听", whisper: "耳语", barge: "强插",
    start: "录音", stop: "停止", pause: "暂停", resume: "继续", rec_on: "录音中", rec_paused: "已暂停",
    rec_off: "未录音", monitor_started: "您的话机正在振铃：接听即可监听。", no_results: "没有结果。",
    needs_supervisor: "此页面仅供班长使用。", audit: "收听记录", history: "记录", when: "时间",
    who_col: "用户", what: "操作",
  },
});
