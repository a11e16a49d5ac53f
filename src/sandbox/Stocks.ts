/** Real Taiwanese listed stocks for the generated data, and finding the one a text mentions (by code or name). */

export interface Stock {
  readonly code: string
  readonly name: string
  readonly sector: string
  /** A rough recent price level in TWD, only to make generated quotes look sane. */
  readonly basePrice: number
}

const stock = (code: string, name: string, sector: string, basePrice: number): Stock => ({
  code,
  name,
  sector,
  basePrice
})

/** Real listings; more than 50 so a screen with the maximum limit never repeats a stock. */
export const stocks: readonly [Stock, ...Array<Stock>] = [
  stock("2330", "台積電", "半導體", 1000),
  stock("2317", "鴻海", "電子代工", 180),
  stock("2454", "聯發科", "IC設計", 1300),
  stock("2308", "台達電", "電源管理", 400),
  stock("2412", "中華電", "電信", 130),
  stock("2881", "富邦金", "金融", 85),
  stock("2882", "國泰金", "金融", 65),
  stock("1301", "台塑", "塑化", 45),
  stock("2303", "聯電", "半導體", 45),
  stock("3711", "日月光投控", "封測", 150),
  stock("2891", "中信金", "金融", 45),
  stock("2002", "中鋼", "鋼鐵", 21),
  stock("1216", "統一", "食品", 75),
  stock("2886", "兆豐金", "金融", 40),
  stock("2884", "玉山金", "金融", 30),
  stock("3008", "大立光", "光學", 2300),
  stock("2357", "華碩", "品牌電腦", 600),
  stock("2382", "廣達", "AI伺服器", 280),
  stock("2395", "研華", "工業電腦", 380),
  stock("6505", "台塑化", "塑化", 40),
  stock("1303", "南亞", "塑化", 40),
  stock("1326", "台化", "塑化", 40),
  stock("2207", "和泰車", "汽車", 600),
  stock("2327", "國巨", "被動元件", 170),
  stock("2379", "瑞昱", "IC設計", 500),
  stock("2408", "南亞科", "記憶體", 50),
  stock("2474", "可成", "機殼", 200),
  stock("2603", "長榮", "航運", 200),
  stock("2609", "陽明", "航運", 60),
  stock("2615", "萬海", "航運", 80),
  stock("2880", "華南金", "金融", 30),
  stock("2885", "元大金", "金融", 35),
  stock("2890", "永豐金", "金融", 25),
  stock("2892", "第一金", "金融", 28),
  stock("2912", "統一超", "零售", 260),
  stock("3034", "聯詠", "IC設計", 450),
  stock("3045", "台灣大", "電信", 110),
  stock("4904", "遠傳", "電信", 85),
  stock("4938", "和碩", "電子代工", 90),
  stock("5880", "合庫金", "金融", 27),
  stock("6669", "緯穎", "AI伺服器", 2500),
  stock("2301", "光寶科", "電源管理", 110),
  stock("2345", "智邦", "網通", 700),
  stock("3231", "緯創", "AI伺服器", 110),
  stock("2356", "英業達", "電子代工", 45),
  stock("1101", "台泥", "水泥", 30),
  stock("1102", "亞泥", "水泥", 40),
  stock("2105", "正新", "橡膠", 40),
  stock("3037", "欣興", "PCB", 150),
  stock("2376", "技嘉", "品牌電腦", 280),
  stock("2377", "微星", "品牌電腦", 150),
  stock("3017", "奇鋐", "散熱", 700),
  stock("2449", "京元電子", "封測", 110),
  stock("3661", "世芯-KY", "IC設計", 2500),
  stock("1590", "亞德客-KY", "機械", 1000)
]

const byCode = new Map(stocks.map((s) => [s.code, s] as const))

export const stockByCode = (code: string): Stock | undefined => byCode.get(code)

/**
 * What a prompt is about: a known stock (found by 4-digit code first, then by name), else a bare
 * 4-digit code we don't know, else nothing.
 */
export type StockMention =
  | { readonly _tag: "Known"; readonly stock: Stock }
  | { readonly _tag: "UnknownCode"; readonly code: string }
  | { readonly _tag: "None" }

export const findStock = (text: string): StockMention => {
  // Lookarounds instead of \b: CJK characters are non-word characters, and a 4-digit run inside a
  // longer number (a date, a price) is not a stock code.
  const codes = Array.from(text.matchAll(/(?<!\d)\d{4}(?!\d)/g), (m) => m[0])
  for (const code of codes) {
    const known = byCode.get(code)
    if (known !== undefined) return { _tag: "Known", stock: known }
  }
  // Longest name first so "南亞科" is not reported as "南亞".
  const byName = [...stocks].sort((a, b) => b.name.length - a.name.length).find((s) => text.includes(s.name))
  if (byName !== undefined) return { _tag: "Known", stock: byName }
  const first = codes[0]
  return first === undefined ? { _tag: "None" } : { _tag: "UnknownCode", code: first }
}
